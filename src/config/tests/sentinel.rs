//! `--sentinel` and its companions.

use super::*;

fn sentinel_flags() -> Flags {
    Flags {
        sentinel: Some(vec!["s1.example".into(), "10.0.0.2:26380".into()]),
        sentinel_master: Some("mymaster".into()),
        token_file: Some("/run/secrets/token".into()),
        ..Flags::default()
    }
}

#[test]
fn sentinels_default_to_port_26379_and_to_the_routes_tls_checked_against_each_host() {
    let config = Config::from_flags(&sentinel_flags()).unwrap();
    let route = &config.routes[0];
    let sentinel = route.sentinel.as_ref().unwrap();
    let addrs: Vec<String> = sentinel.addrs.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["s1.example:26379", "10.0.0.2:26380"]);
    assert_eq!(sentinel.master, "mymaster");
    assert_eq!(sentinel.tls.as_ref().unwrap().server_name, None);
    // The primary's certificate is checked against the host a Sentinel names.
    assert_eq!(route.tls.as_ref().unwrap().server_name, None);
    assert_eq!(route.describe_upstream(), "master mymaster via Sentinel");
    let plain = Config::from_flags(&Flags {
        no_tls: Some(true),
        ..sentinel_flags()
    })
    .unwrap();
    assert!(plain.routes[0].sentinel.as_ref().unwrap().tls.is_none());
    let named = Config::from_flags(&Flags {
        tls_server_name: Some("redis.internal".into()),
        sentinel_tls: Some(false),
        ..sentinel_flags()
    })
    .unwrap();
    let route = &named.routes[0];
    assert_eq!(
        route.tls.as_ref().unwrap().server_name.as_deref(),
        Some("redis.internal")
    );
    assert!(route.sentinel.as_ref().unwrap().tls.is_none());
}

#[test]
fn sentinel_mistakes_are_reported_naming_their_flags() {
    let message = |flags: Flags| Config::from_flags(&flags).unwrap_err().to_string();
    let both = message(Flags {
        upstream: Some("cache:6379".into()),
        ..sentinel_flags()
    });
    assert!(
        both.contains("--upstream and --sentinel: give one"),
        "{both}"
    );
    let nameless = message(Flags {
        sentinel_master: None,
        ..sentinel_flags()
    });
    assert!(
        nameless.contains("--sentinel-master: required"),
        "{nameless}"
    );
    let cluster = message(Flags {
        cluster: Some(true),
        ..sentinel_flags()
    });
    assert!(cluster.contains("--cluster and --sentinel"), "{cluster}");
    let stray = message(Flags {
        upstream: Some("cache:6379".into()),
        sentinel: None,
        sentinel_password_file: Some("/run/secrets/sentinel".into()),
        ..sentinel_flags()
    });
    assert!(
        stray.contains("--sentinel-master: needs --sentinel"),
        "{stray}"
    );
    assert!(
        stray.contains("--sentinel-password-file: needs --sentinel"),
        "{stray}"
    );
    let bad = message(Flags {
        sentinel: Some(vec!["s1:port".into()]),
        ..sentinel_flags()
    });
    assert!(bad.contains("--sentinel: expected HOST:PORT"), "{bad}");
}

#[test]
fn a_route_table_can_find_its_primary_through_sentinels() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "token-file = \"/t\"\n\
         [[route]]\nlisten = \"127.0.0.1:7000\"\nsentinel = [\"s1:26379\", \"s2\"]\nsentinel-master = \"a\"\n\
         [[route]]\nlisten = \"127.0.0.1:7001\"\nupstream = \"cache:6379\"\n",
    )
    .unwrap();
    let config = Config::from_flags(&Flags {
        config: Some(path),
        ..Flags::default()
    })
    .unwrap();
    let sentinel = config.routes[0].sentinel.as_ref().unwrap();
    assert_eq!((sentinel.master.as_str(), sentinel.addrs.len()), ("a", 2));
    assert!(config.routes[1].sentinel.is_none());
}
