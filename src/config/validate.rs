//! Checks every setting and builds the `Config`; each problem is collected, naming its flag.

use super::file::FileRoute;
use super::*;
use crate::upstream::TlsVersion;

/// Turns settings into a `Config`, collecting every problem.
pub(super) struct Merger<'a> {
    /// Flags and environment merged with the file's top-level keys.
    pub(super) s: &'a Flags,
    /// Flags and environment alone, and the file's top level alone: `no-tls` in a
    /// `[[route]]` stands between the two.
    pub(super) flags: &'a Flags,
    pub(super) file: &'a Flags,
    pub(super) routes: &'a [FileRoute],
    pub(super) errors: &'a mut Vec<String>,
}

impl Merger<'_> {
    pub(super) fn merge(&mut self) -> Option<Config> {
        let token = self.token_source();
        let connections = self.connections(token.as_ref());
        let unix_socket_mode = self.unix_socket_mode();
        let client_password_file = self.s.client_password_file.clone();
        let refresh = self.s.token_refresh_interval.clone();
        let token_refresh_interval = self.duration(
            "--token-refresh-interval",
            refresh.as_ref(),
            DEFAULT_REFRESH_INTERVAL,
        );
        if token_refresh_interval < Duration::from_secs(1) {
            self.errors
                .push("--token-refresh-interval: must be at least 1s".into());
        }
        let versions = self.tls_versions();
        let routes = self.routes(versions);
        let admin_listen = self.admin_listen();
        let shutdown_delay = self.duration(
            "--shutdown-delay",
            self.s.shutdown_delay.as_ref(),
            Duration::ZERO,
        );
        let shutdown_grace = self.duration(
            "--shutdown-grace",
            self.s.shutdown_grace.as_ref(),
            DEFAULT_SHUTDOWN_GRACE,
        );
        let log_format = self.log_format();
        let max_connections = self.s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            self.errors
                .push("--max-connections: must be at least 1".into());
        }
        self.refuse_remote_listeners(&routes, client_password_file.is_some());
        let cluster_ports = self.cluster_ports();
        let worker_threads = self.s.worker_threads;
        if worker_threads == Some(0) || worker_threads.is_some_and(|n| n > 1024) {
            self.errors
                .push("--worker-threads: between 1 and 1024".into());
        }
        Some(Config {
            max_connections,
            worker_threads,
            connections,
            routes,
            token: token?,
            cluster_ports,
            token_refresh_interval,
            unix_socket_mode,
            client_password_file,
            admin_listen,
            ready_requires_upstream: self.s.ready_requires_upstream.unwrap_or(false),
            shutdown_delay,
            shutdown_grace,
            log_level: self.s.log_level.clone(),
            log_format,
        })
    }

    /// What every upstream connection is opened, authenticated and kept with.
    fn connections(&mut self, token: Option<&TokenSource>) -> ConnectionSettings {
        let renewal = self.renewal(token);
        let connect_timeout = self.duration(
            "--connect-timeout",
            self.s.connect_timeout.as_ref(),
            DEFAULT_CONNECT_TIMEOUT,
        );
        let auth_timeout = self.duration(
            "--auth-timeout",
            self.s.auth_timeout.as_ref(),
            DEFAULT_AUTH_TIMEOUT,
        );
        let idle_timeout = self.duration(
            "--idle-timeout",
            self.s.idle_timeout.as_ref(),
            Duration::ZERO,
        );
        let upstream_pool_size = self.s.upstream_pool_size.unwrap_or(0);
        if upstream_pool_size > 1000 {
            self.errors
                .push("--upstream-pool-size: at most 1000".into());
        }
        let upstream_pool_max_age = self.duration(
            "--upstream-pool-max-age",
            self.s.upstream_pool_max_age.as_ref(),
            DEFAULT_POOL_MAX_AGE,
        );
        if upstream_pool_max_age < Duration::from_secs(1) {
            self.errors
                .push("--upstream-pool-max-age: must be at least 1s".into());
        }
        self.check_pool_for_renewal(renewal, upstream_pool_size, upstream_pool_max_age);
        let upstream_reuse = self.s.upstream_reuse.unwrap_or(false);
        if upstream_reuse && upstream_pool_size == 0 {
            self.errors.push(
                "--upstream-reuse: needs --upstream-pool-size (the pool holds the connections reused)"
                    .into(),
            );
        }
        let failover_timeout = self.duration(
            "--failover-timeout",
            self.s.failover_timeout.as_ref(),
            DEFAULT_FAILOVER_TIMEOUT,
        );
        if failover_timeout < Duration::from_secs(1) {
            self.errors
                .push("--failover-timeout: must be at least 1s".into());
        }
        ConnectionSettings {
            username: self.s.username.clone(),
            connect_timeout,
            auth_timeout,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            pool_size: upstream_pool_size,
            pool_max_age: upstream_pool_max_age,
            reuse: upstream_reuse,
            renewal,
            follow_primary: self.s.follow_primary.unwrap_or(true),
            failover_timeout,
            multiplex_connections: self.multiplex_connections(),
        }
    }

    fn admin_listen(&mut self) -> Option<SocketAddr> {
        let value = self
            .s
            .admin_listen
            .clone()
            .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.into());
        match parse_admin_listen(&value) {
            Ok(addr) => addr,
            Err(e) => {
                self.errors.push(format!("--admin-listen: {e}"));
                None
            }
        }
    }

    /// A listener off loopback hands the token to whoever reaches it: only behind a client
    /// password, or when spelled out.
    fn refuse_remote_listeners(&mut self, routes: &[Route], client_password: bool) {
        let allowed = client_password || self.s.allow_remote_clients.unwrap_or(false);
        for route in routes.iter().filter(|r| !r.listen.is_local()) {
            if !allowed {
                self.errors.push(format!(
                    "--listen {} (route {}): not a loopback address; anyone who reaches it uses the proxy's token. \
                     Listen on 127.0.0.1 or a unix:/path, set --client-password-file, or pass --allow-remote-clients",
                    route.listen, route.name
                ));
            }
        }
    }

    fn unix_socket_mode(&mut self) -> u32 {
        let Some(text) = self.s.unix_socket_mode.as_deref() else {
            return DEFAULT_UNIX_SOCKET_MODE;
        };
        match u32::from_str_radix(text, 8) {
            Ok(mode) if mode <= 0o777 => mode,
            _ => {
                self.errors.push(format!(
                    "--unix-socket-mode: expected octal permissions such as 0600 or 0660, got {text:?}"
                ));
                DEFAULT_UNIX_SOCKET_MODE
            }
        }
    }

    fn log_format(&mut self) -> LogFormat {
        match self.s.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                self.errors.push(format!(
                    "--log-format: expected text or json, got {other:?}"
                ));
                LogFormat::Text
            }
        }
    }

    /// `--tls-min-version` and `--tls-max-version`, checked against each other.
    fn tls_versions(&mut self) -> (TlsVersion, TlsVersion) {
        let mut version =
            |flag: &str, value: Option<String>, default: TlsVersion| match value.as_deref() {
                None => default,
                Some("1.2") => TlsVersion::V1_2,
                Some("1.3") => TlsVersion::V1_3,
                Some(other) => {
                    self.errors
                        .push(format!("{flag}: expected 1.2 or 1.3, got {other:?}"));
                    default
                }
            };
        let min = version(
            "--tls-min-version",
            self.s.tls_min_version.clone(),
            TlsVersion::V1_2,
        );
        let max = version(
            "--tls-max-version",
            self.s.tls_max_version.clone(),
            TlsVersion::V1_3,
        );
        if min > max {
            self.errors
                .push("--tls-min-version is newer than --tls-max-version".into());
        }
        (min, max)
    }

    fn routes(&mut self, versions: (TlsVersion, TlsVersion)) -> Vec<Route> {
        if self.routes.is_empty() {
            let listen = self.s.listen.clone();
            let route = FileRoute {
                name: Some("default".into()),
                listen: Some(listen.unwrap_or_else(|| DEFAULT_LISTEN.into())),
                upstream: self.s.upstream.clone(),
                no_tls: None,
                tls_ca_file: None,
                tls_server_name: None,
                cluster: None,
                sentinel: self.s.sentinel.clone(),
                sentinel_master: self.s.sentinel_master.clone(),
                multiplex: None,
            };
            return self
                .route(&route, "", "default", versions)
                .into_iter()
                .collect();
        }
        if self.s.listen.is_some()
            || self.s.upstream.is_some()
            || self.s.sentinel.is_some()
            || self.s.sentinel_master.is_some()
        {
            self.errors.push(
                "--listen / --upstream / --sentinel / --sentinel-master cannot be combined with [[route]] tables in --config; put them in the routes".into(),
            );
        }
        let mut routes: Vec<Route> = Vec::new();
        for (i, table) in self.routes.iter().enumerate() {
            let prefix = format!("[[route]] #{}", i + 1);
            if let Some(route) = self.route(table, &prefix, &format!("route{}", i + 1), versions) {
                if routes.iter().any(|r| r.name == route.name) {
                    self.errors
                        .push(format!("{prefix}: duplicate route name {:?}", route.name));
                }
                if routes.iter().any(|r| r.listen == route.listen) {
                    self.errors.push(format!(
                        "{prefix}: listen address {} is used twice",
                        route.listen
                    ));
                }
                routes.push(route);
            }
        }
        routes
    }

    /// Builds one route; `prefix` is empty for the flag-defined one. A key a route may set
    /// (`cluster`, `no-tls`, `tls-ca-file`, `tls-server-name`) follows the one order every
    /// setting does: the flag, then its variable, then the route's key, then the file's
    /// top-level key.
    fn route(
        &mut self,
        table: &FileRoute,
        prefix: &str,
        default_name: &str,
        (min_version, max_version): (TlsVersion, TlsVersion),
    ) -> Option<Route> {
        let at = |key: &str| {
            if prefix.is_empty() {
                format!("--{key}")
            } else {
                format!("{prefix} {key}")
            }
        };
        let name = table
            .name
            .clone()
            .unwrap_or_else(|| default_name.to_owned());
        let listen = match table.listen.as_deref().map(ListenAddr::parse) {
            Some(Ok(addr)) => Some(addr),
            Some(Err(e)) => {
                self.errors.push(format!("{}: {e}", at("listen")));
                None
            }
            None => {
                self.errors.push(format!("{}: required", at("listen")));
                None
            }
        };
        let upstream = match &table.sentinel {
            Some(_) => self.sentinel_upstream(table, &at),
            None => self.upstream(table, &at),
        };
        let upstream = upstream?;
        let cluster = self
            .flags
            .cluster
            .or(table.cluster)
            .or(self.file.cluster)
            .unwrap_or(false);
        let no_tls = self
            .flags
            .no_tls
            .or(table.no_tls)
            .or(self.file.no_tls)
            .unwrap_or(false);
        let server_name = (self.flags.tls_server_name.clone())
            .or_else(|| table.tls_server_name.clone())
            .or_else(|| self.file.tls_server_name.clone());
        let base_tls = TlsSettings {
            min_version,
            max_version,
            server_name: None,
            ca_file: (self.flags.tls_ca_file.clone())
                .or_else(|| table.tls_ca_file.clone())
                .or_else(|| self.file.tls_ca_file.clone()),
            client_cert: self.s.tls_client_cert.clone(),
            client_key: self.s.tls_client_key.clone(),
            insecure_skip_verify: self.s.tls_insecure_skip_verify.unwrap_or(false),
        };
        let sentinel = self.sentinel(table, &at, cluster, no_tls, &base_tls);
        let tls = (!no_tls).then(|| TlsSettings {
            // With Sentinel, the primary's certificate is checked against the host it named.
            server_name: server_name.or_else(|| sentinel.is_none().then(|| upstream.host.clone())),
            ..base_tls
        });
        if let Some(tls) = &tls
            && tls.client_cert.is_some() != tls.client_key.is_some()
        {
            self.errors
                .push("--tls-client-cert and --tls-client-key must be given together".into());
        }
        let multiplex = (self.flags.multiplex.or(table.multiplex))
            .or(self.file.multiplex)
            .unwrap_or(false);
        Some(Route {
            multiplex,
            name,
            listen: listen?,
            upstream,
            tls,
            cluster,
            sentinel,
        })
    }

    /// A route's `upstream`: HOST:PORT, required.
    fn upstream(&mut self, table: &FileRoute, at: &dyn Fn(&str) -> String) -> Option<UpstreamAddr> {
        match table.upstream.as_deref().map(parse_upstream) {
            Some(Ok(addr)) => Some(addr),
            Some(Err(e)) => {
                self.errors.push(format!("{}: {e}", at("upstream")));
                None
            }
            None => {
                self.errors.push(format!(
                    "{}: required (HOST:PORT of the Redis or Valkey server), or {}",
                    at("upstream"),
                    at("sentinel")
                ));
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        flag: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Duration {
        match value.map(|v| parse_duration(v)) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.errors.push(format!("{flag}: {e}"));
                default
            }
        }
    }
}
