//! TLS 1.3 session tickets, enough for every connection a route opens at once.
//!
//! rustls's default store keeps eight TLS 1.3 tickets per server and uses each once, as RFC 8446
//! recommends. An application that opens connections in parallel (50 at a time in the
//! benchmark) empties it, and every connection beyond the eighth then does a full handshake, in
//! which the server signs with its certificate key: measured, 82% of 3,000 connections were full
//! handshakes. Each resumed connection brings a fresh ticket back, so a deeper store keeps
//! nearly all of them resumed. Kx hints and TLS 1.2 sessions stay in rustls's own cache.

use rustls::NamedGroup;
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls_pki_types::ServerName;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Tickets kept per server name: more than the connections a sidecar opens at once.
pub(super) const TICKETS_PER_SERVER: usize = 256;

/// A route has one server name; a few more cover `--tls-server-name` changes across reloads.
const SERVERS: usize = 16;

#[derive(Debug)]
pub(super) struct SessionStore {
    others: ClientSessionMemoryCache,
    tls13: Mutex<HashMap<ServerName<'static>, VecDeque<Tls13ClientSessionValue>>>,
}

impl SessionStore {
    pub(super) fn new() -> Self {
        SessionStore {
            others: ClientSessionMemoryCache::new(SERVERS),
            tls13: Mutex::default(),
        }
    }
}

impl ClientSessionStore for SessionStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.others.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.others.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.others.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.others.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.others.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        let mut servers = self.tls13.lock().expect("ticket store lock");
        if !servers.contains_key(&server_name) && servers.len() >= SERVERS {
            servers.clear();
        }
        let tickets = servers.entry(server_name).or_default();
        if tickets.len() == TICKETS_PER_SERVER {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        // The newest first: the oldest are the likeliest to have expired.
        self.tls13
            .lock()
            .expect("ticket store lock")
            .get_mut(server_name)?
            .pop_back()
    }
}
