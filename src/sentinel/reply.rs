//! The few Sentinel replies the proxy reads: where the master is, and `+switch-master`.

use crate::address::UpstreamAddr;
use crate::cluster::value::{Value, decode};

/// The reply to `SENTINEL GET-MASTER-ADDR-BY-NAME`: `[ip, port]`, or a null array when the
/// Sentinel does not monitor that name.
pub(super) fn master_addr(reply: &[u8]) -> Result<UpstreamAddr, String> {
    let value = decode(reply).map_err(|e| e.to_string())?;
    match value {
        Value::Array(_, Some(items)) if items.len() == 2 => {
            let host = items[0].text().and_then(|h| std::str::from_utf8(h).ok());
            let port = (items[1].text().and_then(|p| std::str::from_utf8(p).ok()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|&p| p != 0);
            match (host, port) {
                (Some(host), Some(port)) if !host.is_empty() => Ok(UpstreamAddr {
                    host: host.to_owned(),
                    port,
                }),
                _ => Err("the Sentinel's answer is not an address".into()),
            }
        }
        Value::Array(_, None) => Err("the Sentinel does not monitor that master name".into()),
        Value::Line(line) if line.starts_with(b"-") => Err(format!(
            "the Sentinel answered {}",
            String::from_utf8_lossy(&line)
        )),
        _ => Err("the Sentinel's answer is not an address".into()),
    }
}

/// What a frame read on the subscribed connection says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// `+switch-master` for the route's master: its new address.
    Switched(UpstreamAddr),
    /// The confirmation of the subscription, a PING's answer, another master's switch.
    Other,
}

/// Reads one frame of the subscribed connection: a `message` on `+switch-master` carries
/// `<name> <old-ip> <old-port> <new-ip> <new-port>`; one on `+promoted-slave` (sent just
/// before, once the chosen replica answers as a primary, and earlier than `+switch-master` by
/// the time the other replicas take to follow it) `slave <ip:port> <ip> <port> @ <name> ...`.
pub(super) fn event(frame: &[u8], master: &str) -> Event {
    let Ok(Value::Array(_, Some(items))) = decode(frame) else {
        return Event::Other;
    };
    let texts: Vec<&[u8]> = items.iter().filter_map(Value::text).collect();
    let [b"message", channel, payload] = texts.as_slice() else {
        return Event::Other;
    };
    let Ok(payload) = std::str::from_utf8(payload) else {
        return Event::Other;
    };
    let words: Vec<&str> = payload.split(' ').collect();
    let (host, port) = match (*channel, words.as_slice()) {
        (b"+switch-master", [name, _, _, host, port]) if *name == master => (host, port),
        (b"+promoted-slave", ["slave", _, host, port, "@", name, ..]) if *name == master => {
            (host, port)
        }
        _ => return Event::Other,
    };
    match port.parse::<u16>() {
        Ok(port) if port != 0 && !host.is_empty() => Event::Switched(UpstreamAddr {
            host: (*host).to_owned(),
            port,
        }),
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(host: &str, port: u16) -> UpstreamAddr {
        UpstreamAddr {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_masters_address_is_read_and_an_unknown_name_or_an_error_is_explained() {
        let reply = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n";
        assert_eq!(master_addr(reply), Ok(addr("127.0.0.1", 6380)));
        let unknown = master_addr(b"*-1\r\n").unwrap_err();
        assert!(unknown.contains("does not monitor"), "{unknown}");
        let refused = master_addr(b"-NOAUTH Authentication required.\r\n").unwrap_err();
        assert!(refused.contains("NOAUTH"), "{refused}");
        let odd = master_addr(b"*2\r\n$9\r\n127.0.0.1\r\n$1\r\nx\r\n").unwrap_err();
        assert!(odd.contains("not an address"), "{odd}");
        assert!(master_addr(b"*2\r\n$9\r\n127.0.0.1\r\n").is_err());
    }

    #[test]
    fn a_switch_of_this_master_is_told_from_every_other_frame() {
        let on = |channel: &str, payload: &str| {
            format!(
                "*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
                channel.len(),
                payload.len()
            )
        };
        let message = |payload: &str| on("+switch-master", payload);
        let switched = message("mymaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(
            event(switched.as_bytes(), "mymaster"),
            Event::Switched(addr("127.0.0.1", 6380))
        );
        let other = message("othermaster 127.0.0.1 6379 127.0.0.1 6380");
        assert_eq!(event(other.as_bytes(), "mymaster"), Event::Other);
        let subscribed = b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n";
        assert_eq!(event(subscribed, "mymaster"), Event::Other);
        let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
        assert_eq!(event(pong, "mymaster"), Event::Other);
        let cut = message("mymaster 127.0.0.1 6379 127.0.0.1");
        assert_eq!(event(cut.as_bytes(), "mymaster"), Event::Other);
        let promoted = |payload| on("+promoted-slave", payload);
        let ours = promoted("slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379");
        assert_eq!(
            event(ours.as_bytes(), "mymaster"),
            Event::Switched(addr("127.0.0.1", 6380))
        );
        let theirs = promoted("slave 127.0.0.1:6380 127.0.0.1 6380 @ other 127.0.0.1 6379");
        assert_eq!(event(theirs.as_bytes(), "mymaster"), Event::Other);
    }
}
