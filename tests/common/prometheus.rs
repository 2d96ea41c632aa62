//! A real Prometheus (Debian's `prometheus`) on loopback, scraping its targets every second, and
//! its HTTP query API.

use super::*;

pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (admin endpoints) as job `redis-auth-proxy`, and
    /// waits until it is ready. A port another test took first is tried again with a new one.
    pub fn start(targets: &[SocketAddr]) -> Self {
        for _ in 0..5 {
            let mut prometheus = Self::spawn(targets);
            let deadline = Instant::now() + PATIENCE;
            loop {
                let reachable = TcpStream::connect(prometheus.addr).is_ok();
                if reachable && http(prometheus.addr, "GET", "/-/ready").0 == 200 {
                    return prometheus;
                }
                if let Ok(Some(_)) = prometheus.child.try_wait() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "Prometheus did not start:\n{}",
                    prometheus.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("Prometheus could not start after 5 tries (is the prometheus package installed?)");
    }

    fn spawn(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: redis-auth-proxy\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("prometheus.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run prometheus (Debian: prometheus): {e}"));
        Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs an instant query; the API's whole answer (`status`, `data.result`, or `error`).
    pub fn query(&self, expr: &str) -> serde_json::Value {
        let (_, body) = http(
            self.addr,
            "GET",
            &format!("/api/v1/query?query={}", percent_encode(expr)),
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}
