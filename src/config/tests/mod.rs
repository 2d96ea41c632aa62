//! Settings: precedence, validation and error texts.

use super::*;

mod sentinel;

fn flags() -> Flags {
    Flags {
        upstream: Some("cache.example.com:6380".into()),
        token_file: Some("/run/secrets/token".into()),
        ..Flags::default()
    }
}

#[test]
fn durations_need_units() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("30").is_err());
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn upstream_addresses_accept_hosts_ipv6_and_a_default_port() {
    assert_eq!(
        parse_upstream("h:1").unwrap(),
        UpstreamAddr {
            host: "h".into(),
            port: 1
        }
    );
    assert_eq!(parse_upstream("h").unwrap().port, 6379);
    assert_eq!(parse_upstream("[::1]:7000").unwrap().host, "::1");
    assert!(parse_upstream("h:0").is_err());
    assert!(parse_upstream("h:port").is_err());
}

#[test]
fn defaults_give_one_tls_route_on_localhost_6379() {
    let config = Config::from_flags(&flags()).unwrap();
    let route = &config.routes[0];
    assert_eq!(route.listen.to_string(), "127.0.0.1:6379");
    assert_eq!(
        route.tls.as_ref().unwrap().server_name.as_deref(),
        Some("cache.example.com")
    );
    assert_eq!(config.connections.connect_timeout, Duration::from_secs(5));
}

#[test]
fn every_error_is_reported_together_naming_its_flag() {
    let bad = Flags {
        listen: Some("nonsense".into()),
        connect_timeout: Some("5".into()),
        ..Flags::default()
    };
    let message = Config::from_flags(&bad).unwrap_err().to_string();
    assert!(message.contains("--listen"), "{message}");
    assert!(message.contains("--upstream"), "{message}");
    assert!(message.contains("--connect-timeout"), "{message}");
    assert!(message.contains("no token source"), "{message}");
}

#[test]
fn a_remote_listener_needs_a_client_password_or_the_explicit_flag() {
    let remote = Flags {
        listen: Some("0.0.0.0:6379".into()),
        ..flags()
    };
    let message = Config::from_flags(&remote).unwrap_err().to_string();
    assert!(message.contains("--client-password-file"), "{message}");
    let guarded = Flags {
        client_password_file: Some("/run/secrets/client".into()),
        ..remote.clone()
    };
    assert!(Config::from_flags(&guarded).is_ok());
    let unix = Flags {
        listen: Some("unix:/run/redis-auth-proxy.sock".into()),
        ..flags()
    };
    assert!(Config::from_flags(&unix).is_ok(), "a Unix socket is local");
}

#[test]
fn unix_socket_mode_is_octal() {
    let with_mode = |mode: &str| {
        Config::from_flags(&Flags {
            unix_socket_mode: Some(mode.into()),
            ..flags()
        })
    };
    assert_eq!(with_mode("0660").unwrap().unix_socket_mode, 0o660);
    assert_eq!(
        Config::from_flags(&flags()).unwrap().unix_socket_mode,
        0o600
    );
    assert!(with_mode("0999").is_err());
    assert!(with_mode("1777").is_err());
}

#[test]
fn two_token_sources_are_refused() {
    let both = Flags {
        token_env: Some("T".into()),
        ..flags()
    };
    let message = Config::from_flags(&both).unwrap_err().to_string();
    assert!(
        message.contains("--token-file and --token-env"),
        "{message}"
    );
}

#[test]
fn upstream_reuse_needs_a_pool_to_hold_the_connections() {
    let reuse = Flags {
        upstream_reuse: Some(true),
        ..flags()
    };
    let error = Config::from_flags(&reuse).unwrap_err().to_string();
    assert!(
        error.contains("--upstream-reuse: needs --upstream-pool-size"),
        "{error}"
    );
    let with_pool = Flags {
        upstream_pool_size: Some(8),
        ..reuse
    };
    assert!(Config::from_flags(&with_pool).unwrap().connections.reuse);
}

fn iam_flags() -> Flags {
    Flags {
        upstream: Some("cache.example.com:6379".into()),
        iam_service: Some("elasticache".into()),
        iam_cache_name: Some("My-Group".into()),
        username: Some("app-user".into()),
        ..Flags::default()
    }
}

#[test]
fn iam_settings_make_an_iam_source_with_renewal_every_eleven_hours_by_default() {
    let config = Config::from_flags(&iam_flags()).unwrap();
    assert_eq!(config.token.kind(), "iam");
    assert_eq!(
        config.connections.renewal,
        Some(Renewal::Interval {
            every: Duration::from_secs(11 * 3600),
            lifetime: Duration::from_secs(12 * 3600),
        })
    );
    let other = Config::from_flags(&flags()).unwrap();
    assert_eq!(
        other.connections.renewal, None,
        "only IAM connections renew"
    );
}

#[test]
fn iam_settings_are_checked_together_naming_their_flags() {
    let bad = Flags {
        iam_service: Some("dynamodb".into()),
        iam_cache_name: None,
        username: Some("App-User".into()),
        iam_reauth_interval: Some("13h".into()),
        token_file: Some("/run/secrets/token".into()),
        ..iam_flags()
    };
    let errors = Config::from_flags(&bad).unwrap_err().0.join("\n");
    for expected in [
        "--iam-service: expected elasticache or memorydb",
        "--iam-cache-name:",
        "--username: IAM user ids are lowercase",
        "--iam-reauth-interval: must be below --iam-connection-lifetime",
        "--token-file and --iam-service are both set",
    ] {
        assert!(
            errors.contains(expected),
            "{expected:?} missing from:\n{errors}"
        );
    }
}

#[test]
fn iam_companions_without_the_service_are_refused() {
    let errors = Config::from_flags(&Flags {
        iam_serverless: Some(true),
        iam_reauth_interval: Some("1h".into()),
        ..flags()
    })
    .unwrap_err()
    .0
    .join("\n");
    assert!(
        errors.contains("--iam-serverless: needs --iam-service"),
        "{errors}"
    );
    assert!(
        errors.contains("--iam-reauth-interval: needs --iam-service"),
        "{errors}"
    );
}

#[test]
fn iam_needs_the_user_id() {
    let errors = Config::from_flags(&Flags {
        username: None,
        ..iam_flags()
    })
    .unwrap_err()
    .0
    .join("\n");
    assert!(
        errors.contains("--username: the IAM user id is needed"),
        "{errors}"
    );
}

#[test]
fn cluster_mode_is_a_route_setting_with_a_port_range() {
    let config = Config::from_flags(&Flags {
        cluster: Some(true),
        cluster_ports: Some("20000-20009".into()),
        ..flags()
    })
    .unwrap();
    assert!(config.routes[0].cluster);
    assert_eq!(config.cluster_ports, 20000..=20009);
    let default = Config::from_flags(&flags()).unwrap();
    assert!(!default.routes[0].cluster);
    assert_eq!(default.cluster_ports, 7001..=7100);
}

#[test]
fn a_route_table_can_turn_cluster_mode_on_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "[token]\nfile = \"/run/secrets/token\"\n\n\
         [[route]]\nname = \"cache\"\nlisten = \"127.0.0.1:6379\"\nupstream = \"cfg.example:6379\"\ncluster = true\n\n\
         [[route]]\nname = \"plain\"\nlisten = \"127.0.0.1:6380\"\nupstream = \"single.example:6379\"\n",
    )
    .unwrap();
    let config = Config::from_flags(&Flags {
        config: Some(path),
        ..Flags::default()
    })
    .unwrap();
    let cluster: Vec<bool> = config.routes.iter().map(|r| r.cluster).collect();
    assert_eq!(cluster, [true, false]);
}

#[test]
fn a_bad_cluster_port_range_names_the_flag() {
    for bad in ["7100-7001", "0-10", "7001", "a-b"] {
        let errors = Config::from_flags(&Flags {
            cluster_ports: Some(bad.into()),
            ..flags()
        })
        .unwrap_err()
        .0
        .join("\n");
        assert!(
            errors.contains("--cluster-ports: expected LOW-HIGH"),
            "{bad}: {errors}"
        );
    }
}

#[test]
fn a_route_key_loses_to_its_flag_and_beats_the_files_top_level_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "tls-server-name = \"top.example\"\ntls-ca-file = \"/top.pem\"\n\
         [token]\nfile = \"/run/secrets/token\"\n\n\
         [[route]]\nname = \"own\"\nlisten = \"127.0.0.1:6379\"\nupstream = \"a.example:6379\"\n\
         tls-server-name = \"route.example\"\ntls-ca-file = \"/route.pem\"\n\n\
         [[route]]\nname = \"plain\"\nlisten = \"127.0.0.1:6380\"\nupstream = \"b.example:6379\"\n",
    )
    .unwrap();
    let names = |flags: Flags| {
        let config = Config::from_flags(&flags).unwrap();
        let tls = config.routes.iter().map(|r| r.tls.clone().unwrap());
        tls.map(|t| {
            (
                t.server_name.unwrap(),
                t.ca_file.unwrap().display().to_string(),
            )
        })
        .collect::<Vec<_>>()
    };
    let file_only = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    assert_eq!(
        names(file_only.clone()),
        [
            ("route.example".into(), "/route.pem".into()),
            ("top.example".into(), "/top.pem".into())
        ]
    );
    let flagged = Flags {
        tls_server_name: Some("flag.example".into()),
        tls_ca_file: Some("/flag.pem".into()),
        ..file_only
    };
    let flag = ("flag.example".to_string(), "/flag.pem".to_string());
    assert_eq!(names(flagged), [flag.clone(), flag]);
}
