//! The local side: where applications connect, over TCP or a Unix socket.
//!
//! A Unix socket is created under a temporary name, given its mode, then renamed into place,
//! so no client can connect while it still has the umask's permissions. A stale socket left by
//! a crashed proxy is replaced; a live one (something answers on it) or any other kind of file
//! at the path is an error.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A `--listen` address: `IP:PORT` or `unix:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err(format!("expected unix:/absolute/path, got {text:?}"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            format!("expected IP:PORT or unix:/path, e.g. 127.0.0.1:6379, got {text:?}")
        })
    }

    /// Whether only this machine can reach it.
    pub fn is_local(&self) -> bool {
        match self {
            ListenAddr::Tcp(addr) => addr.ip().is_loopback(),
            ListenAddr::Unix(_) => true,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound listener of either kind.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// An accepted client connection of either kind.
pub enum ClientStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Binds `addr`; a Unix socket gets `mode` before any client can reach it.
    pub async fn bind(addr: &ListenAddr, mode: u32) -> std::io::Result<Self> {
        match addr {
            ListenAddr::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
            ListenAddr::Unix(path) => bind_unix(path, mode).await,
        }
    }

    pub fn local_addr(&self) -> Option<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().ok().map(ListenAddr::Tcp),
            Listener::Unix { path, .. } => Some(ListenAddr::Unix(path.clone())),
        }
    }

    /// Accepts one client; the string names it for logs.
    pub async fn accept(&self) -> std::io::Result<(ClientStream, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((ClientStream::Tcp(stream), peer.to_string()))
            }
            Listener::Unix { listener, path } => {
                let (stream, _) = listener.accept().await?;
                Ok((
                    ClientStream::Unix(stream),
                    format!("unix:{}", path.display()),
                ))
            }
        }
    }

    /// Removes a Unix socket's file when the proxy stops accepting, so a later start finds a
    /// clean path.
    pub fn remove_socket_file(&self) {
        if let Listener::Unix { path, .. } = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn bind_unix(path: &Path, mode: u32) -> std::io::Result<Listener> {
    refuse_live_or_foreign(path).await?;
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name in the path")
    })?;
    let mut temporary = file_name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(Listener::Unix {
        listener,
        path: path.to_owned(),
    })
}

/// A socket someone still serves, or a file that is not a socket, is never replaced.
async fn refuse_live_or_foreign(path: &Path) -> std::io::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket",
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_ip_port_or_absolute_unix_paths() {
        assert_eq!(
            ListenAddr::parse("unix:/run/redis.sock").unwrap(),
            ListenAddr::Unix("/run/redis.sock".into())
        );
        assert!(ListenAddr::parse("unix:relative.sock").is_err());
        assert!(ListenAddr::parse("127.0.0.1:6379").unwrap().is_local());
        assert!(!ListenAddr::parse("0.0.0.0:6379").unwrap().is_local());
        assert!(ListenAddr::parse("localhost:6379").is_err());
    }
}
