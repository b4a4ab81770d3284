//! `envoy/kong/kong.yml` cannot run here (no Kong package in these
//! registries); its structure is checked instead: what the chain relies on.

use serde_yaml::Value;
use tollgate::config::Config;

fn kong() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/kong/kong.yml"))
        .unwrap();
    serde_yaml::from_str(&text).expect("kong.yml is YAML")
}

fn plugins(node: &Value) -> Vec<&Value> {
    node["plugins"]
        .as_sequence()
        .map(|p| p.iter().collect())
        .unwrap_or_default()
}

fn named<'a>(list: &[&'a Value], name: &str) -> Option<&'a Value> {
    list.iter().copied().find(|p| p["name"] == name)
}

fn strings(node: &Value) -> Vec<&str> {
    node.as_sequence()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn declarative_format_and_a_service_that_points_at_envoy() {
    let kong = kong();
    assert_eq!(kong["_format_version"], "3.0");
    let services = kong["services"].as_sequence().unwrap();
    assert_eq!(
        services[0]["url"], "http://envoy:10000",
        "Kong forwards to Envoy's listener"
    );
    assert_eq!(strings(&services[0]["routes"][0]["paths"]), ["/"]);
}

#[test]
fn key_auth_forwards_the_key_envoy_uses_as_user_id() {
    let kong = kong();
    let global = plugins(&kong);
    let auth = named(&global, "key-auth").expect("key-auth is global");
    assert_eq!(strings(&auth["config"]["key_names"]), ["x-api-key"]);
    assert_eq!(
        auth["config"]["hide_credentials"], false,
        "Envoy needs x-api-key"
    );
    let envoy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/envoy/envoy.yaml")).unwrap();
    assert!(envoy.contains(
        "header_name: x-api-key\n                                      descriptor_key: user_id"
    ));
    assert!(envoy.contains(
        "header_name: x-tollgate-tier\n                                      descriptor_key: tier"
    ));
}

#[test]
fn clients_cannot_pick_a_tier_and_every_group_sets_a_configured_one() {
    let kong = kong();
    let global = plugins(&kong);
    let strip = named(&global, "request-transformer").expect("a global transformer");
    assert_eq!(
        strings(&strip["config"]["remove"]["headers"]),
        ["x-tollgate-tier"]
    );

    let builtin = Config::builtin();
    let model = builtin
        .domain("fingerprint-api")
        .unwrap()
        .tier_model
        .as_ref()
        .unwrap();
    let groups = kong["consumer_groups"].as_sequence().unwrap();
    assert!(groups.len() >= 3);
    for group in groups {
        let name = group["name"].as_str().unwrap();
        let transformer =
            named(&plugins(group), "request-transformer").expect("a transformer per group");
        assert_eq!(
            strings(&transformer["config"]["remove"]["headers"]),
            ["x-tollgate-tier"],
            "{name}"
        );
        assert_eq!(
            strings(&transformer["config"]["add"]["headers"]),
            [format!("x-tollgate-tier:{name}")]
        );
        assert!(
            model.tier(name).is_some(),
            "group {name} is a tier tollgate knows"
        );
    }
    for consumer in kong["consumers"].as_sequence().unwrap() {
        assert!(
            consumer["keyauth_credentials"][0]["key"]
                .as_str()
                .is_some_and(|k| !k.is_empty())
        );
        let group = consumer["groups"][0]["name"].as_str().unwrap();
        assert!(
            groups.iter().any(|g| g["name"] == group),
            "consumer group {group} exists"
        );
    }
}
