//! The Grafana dashboard (`deploy/grafana/redis-auth-proxy.json`) against a real Prometheus
//! scraping a running proxy under a little traffic: every panel's query parses, and every panel
//! not about cluster mode or IAM (their descriptions say "With --cluster", "With --iam-service")
//! returns data.

mod common;

use common::prometheus::Prometheus;
use common::*;

/// One panel: its title, its description, and its queries with the dashboard's variables as
/// Grafana fills them for every route.
struct Panel {
    title: String,
    description: String,
    queries: Vec<String>,
}

fn panels() -> Vec<Panel> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/redis-auth-proxy.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let text_of = |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .filter(|panel| panel["type"] != "row")
        .map(|panel| Panel {
            title: text_of(&panel["title"]),
            description: text_of(&panel["description"]),
            queries: (panel["targets"].as_array().expect("targets").iter())
                .map(|target| {
                    text_of(&target["expr"])
                        .replace("$route", ".*")
                        .replace("$__rate_interval", "1m")
                })
                .collect(),
        })
        .collect()
}

/// The first sample's value of an instant query's answer.
fn first_value(answer: &serde_json::Value) -> Option<f64> {
    answer["data"]["result"].get(0)?["value"][1]
        .as_str()?
        .parse()
        .ok()
}

#[test]
fn every_dashboard_query_parses_and_the_panels_about_traffic_show_data() {
    let redis = RedisServer::start();
    let token = TokenFile::new(TOKEN_A);
    let mut flags = flags(&redis, &token);
    flags.upstream_pool_size = Some(2);
    flags.upstream_reuse = Some(true);
    let proxy = Proxy::start(flags);
    // A little traffic: clients that come and go (pool takes, reuse), commands, bytes.
    for i in 0..5 {
        let mut client = proxy.client();
        let () = redis::cmd("SET")
            .arg("k")
            .arg(i)
            .query(&mut client)
            .unwrap();
    }
    eventually("a connection was reused", || {
        let exposition = http(proxy.admin_addr(), "GET", "/metrics").1;
        sample(&exposition, "redis_auth_proxy_upstream_reuses_total", &[]) >= 1.0
    });
    let prometheus = Prometheus::start(&[proxy.admin_addr()]);
    // rate() needs two samples in its window.
    eventually("Prometheus scraped the proxy three times", || {
        let answer = prometheus.query("count_over_time(redis_auth_proxy_build_info[1m])");
        first_value(&answer).is_some_and(|scrapes| scrapes >= 3.0)
    });
    let panels = panels();
    assert!(panels.len() > 15, "the dashboard was read");
    let mut empty = Vec::new();
    for panel in &panels {
        let mut data = false;
        for query in &panel.queries {
            let answer = prometheus.query(query);
            assert_eq!(
                answer["status"], "success",
                "{}: {query}: {answer}",
                panel.title
            );
            data |= !answer["data"]["result"].as_array().unwrap().is_empty();
        }
        let elsewhere = ["With --cluster", "With --iam-service"];
        if !data && !elsewhere.iter().any(|w| panel.description.starts_with(w)) {
            empty.push(panel.title.clone());
        }
    }
    assert!(
        empty.is_empty(),
        "panels with no data under traffic: {empty:?}"
    );
}
