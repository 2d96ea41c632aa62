//! SigV4 as the service checks a token, written here apart from the proxy's signing code (which
//! uses aws-sigv4), so that a mistake in one is not repeated in the other.

use super::super::percent_encode;
use super::{CACHE, Ledger, REGION, USER};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Checks a token the way the service does; `Err` says why not.
pub fn verify(token: &str, ledger: &Ledger) -> Result<(), String> {
    let (host, query) = token.split_once("/?").ok_or("no /?")?;
    let mut params = BTreeMap::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').ok_or("k=v")?;
        params.insert(k.to_owned(), decode(v));
    }
    let get = |k: &str| params.get(k).cloned().ok_or(format!("no {k}"));
    (host == CACHE).then_some(()).ok_or("host")?;
    (get("Action")? == "connect" && get("User")? == USER)
        .then_some(())
        .ok_or("action/user")?;
    (get("X-Amz-Algorithm")? == "AWS4-HMAC-SHA256")
        .then_some(())
        .ok_or("algorithm")?;
    (get("X-Amz-SignedHeaders")? == "host")
        .then_some(())
        .ok_or("signed headers")?;
    let expires: u64 = get("X-Amz-Expires")?.parse().map_err(|_| "expires")?;
    (expires <= 900).then_some(()).ok_or("expires > 900")?;
    let credential = get("X-Amz-Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service, "aws4_request"] = scope[..] else {
        return Err("credential scope".into());
    };
    (region == REGION && service == "elasticache")
        .then_some(())
        .ok_or("scope")?;
    let issued = ledger
        .issued
        .lock()
        .unwrap()
        .get(key)
        .cloned()
        .ok_or("unknown key")?;
    let now = SystemTime::now();
    (issued.expires > now)
        .then_some(())
        .ok_or("credentials expired")?;
    (get("X-Amz-Security-Token")? == issued.session_token)
        .then_some(())
        .ok_or("session token")?;
    let amz_date = get("X-Amz-Date")?;
    let signed_at = parse_amz_date(&amz_date).ok_or("date")?;
    (now < signed_at + Duration::from_secs(expires))
        .then_some(())
        .ok_or("token expired")?;
    let canonical_query: Vec<String> = params
        .iter()
        .filter(|(k, _)| *k != "X-Amz-Signature")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let empty_hash = hex(&Sha256::digest(b""));
    let canonical = format!(
        "GET\n/\n{}\nhost:{host}\n\nhost\n{empty_hash}",
        canonical_query.join("&")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut signing_key = hmac(format!("AWS4{}", issued.secret).as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        signing_key = hmac(&signing_key, part.as_bytes());
    }
    let expected = hex(&hmac(&signing_key, to_sign.as_bytes()));
    (get("X-Amz-Signature")? == expected)
        .then_some(())
        .ok_or("signature")?;
    ledger.keys_used.lock().unwrap().push(key.to_owned());
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let n = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(9..11)?, n(11..13)?, n(13..15)?);
    // days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs as u64))
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
