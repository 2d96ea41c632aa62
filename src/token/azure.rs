//! Microsoft Entra ID access tokens for Azure Managed Redis and Azure Cache for Redis
//! (`--entra-id`): `AUTH <object-id> <token>`, the object id being the token's `oid` claim.
//!
//! The credential is found as the Azure SDKs' default chain finds it, from the same
//! environment variables, looked at again at every fetch: a client secret
//! (`AZURE_CLIENT_SECRET`), workload identity (`AZURE_FEDERATED_TOKEN_FILE`, read at every
//! fetch since the kubelet rotates it), else a managed identity (App Service, Functions and
//! Container Apps through `IDENTITY_ENDPOINT`; otherwise the instance metadata service).
//! Entra ID closes a connection when the token that authenticated it expires, so each
//! connection is renewed in band before then (`forward/timers.rs`).

use super::oauth::{Held, Issued, env, jwt_claim};
use super::{Credentials, TokenError, http};
use secrecy::zeroize::Zeroizing;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const IMDS: &str = "http://169.254.169.254";

/// `--entra-scope`, `--entra-client-id`, `--username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraSettings {
    pub scope: String,
    /// A user-assigned managed identity's or an application's client id; `None`:
    /// `AZURE_CLIENT_ID`.
    pub client_id: Option<String>,
    /// `--username`; `None`: the token's `oid`.
    pub username: Option<String>,
}

/// Fetches Entra ID tokens, holding the last one while it is fresh.
#[derive(Debug, Clone)]
pub struct EntraSource {
    settings: EntraSettings,
    held: Held,
}

/// Which credential the environment offers, in the SDKs' order.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    ClientSecret {
        tenant: String,
        client_id: String,
    },
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        file: PathBuf,
    },
    AppService {
        endpoint: String,
    },
    Imds {
        host: String,
    },
}

impl EntraSource {
    pub fn new(settings: EntraSettings) -> Self {
        EntraSource {
            settings,
            held: Held::default(),
        }
    }

    pub fn describe(&self) -> String {
        let credential = match self.credential() {
            Ok(Credential::ClientSecret { .. }) => "client secret",
            Ok(Credential::WorkloadIdentity { .. }) => "workload identity",
            Ok(Credential::AppService { .. }) => "App Service managed identity",
            Ok(Credential::Imds { .. }) => "managed identity",
            Err(_) => "no credential",
        };
        format!("Entra ID ({credential}, scope {})", self.settings.scope)
    }

    /// The token held while it is fresh, else a new one (`fresh`: the server refused it).
    pub async fn load(&self, fresh: bool) -> Result<Credentials, TokenError> {
        let issued = self.held.get(fresh, self.fetch(SystemTime::now())).await?;
        let username = match &self.settings.username {
            Some(user) => user.clone(),
            None => jwt_claim(&issued.token, "oid")
                .ok_or_else(|| self.error("the token has no oid claim; set --username".into()))?,
        };
        Ok(Credentials {
            username: Some(username),
            current: issued.token,
            previous: None,
            expires: Some(issued.expires),
        })
    }

    pub fn due_in(&self) -> Option<Duration> {
        self.held.due_in()
    }

    fn credential(&self) -> Result<Credential, TokenError> {
        let client_id = self
            .settings
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"));
        let tenant = env("AZURE_TENANT_ID");
        if let (Some(tenant), Some(client_id), Some(_)) =
            (&tenant, &client_id, env("AZURE_CLIENT_SECRET"))
        {
            return Ok(Credential::ClientSecret {
                tenant: tenant.clone(),
                client_id: client_id.clone(),
            });
        }
        if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                return Err(self.error(
                    "AZURE_FEDERATED_TOKEN_FILE is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is not".into(),
                ));
            };
            return Ok(Credential::WorkloadIdentity {
                tenant,
                client_id,
                file: file.into(),
            });
        }
        if let (Some(endpoint), Some(_)) = (env("IDENTITY_ENDPOINT"), env("IDENTITY_HEADER")) {
            return Ok(Credential::AppService { endpoint });
        }
        let host = env("AZURE_POD_IDENTITY_AUTHORITY_HOST").unwrap_or_else(|| IMDS.into());
        Ok(Credential::Imds {
            host: host.trim_end_matches('/').to_owned(),
        })
    }

    async fn fetch(&self, now: SystemTime) -> Result<Issued, TokenError> {
        let answer = match self.credential()? {
            Credential::ClientSecret { tenant, client_id } => {
                let secret = Zeroizing::new(env("AZURE_CLIENT_SECRET").unwrap_or_default());
                self.post(&tenant, &client_id, "client_secret", &secret)
                    .await
            }
            Credential::WorkloadIdentity {
                tenant,
                client_id,
                file,
            } => {
                let assertion = self.read_assertion(&file).await?;
                self.post(&tenant, &client_id, "client_assertion", &assertion)
                    .await
            }
            Credential::AppService { endpoint } => {
                let header = Zeroizing::new(env("IDENTITY_HEADER").unwrap_or_default());
                let url = self.identity_url(&endpoint, "2019-08-01");
                self.get(&url, &[("X-IDENTITY-HEADER", header.as_str())])
                    .await
            }
            Credential::Imds { host } => {
                let url = self.identity_url(
                    &format!("{host}/metadata/identity/oauth2/token"),
                    "2018-02-01",
                );
                self.get(&url, &[("Metadata", "true")]).await
            }
        }?;
        Issued::parse(&answer, now, "the Entra ID token answer")
    }

    /// A managed identity endpoint's URL: the resource is the scope without `/.default`.
    fn identity_url(&self, endpoint: &str, api_version: &str) -> String {
        let resource = self.settings.scope.trim_end_matches("/.default");
        let mut url = format!(
            "{endpoint}?api-version={api_version}&resource={}",
            http::form_encode(resource)
        );
        let client_id = self
            .settings
            .client_id
            .clone()
            .or_else(|| env("AZURE_CLIENT_ID"));
        if let Some(client_id) = client_id {
            url.push_str(&format!("&client_id={}", http::form_encode(&client_id)));
        }
        url
    }

    async fn read_assertion(
        &self,
        file: &std::path::Path,
    ) -> Result<Zeroizing<String>, TokenError> {
        let text = tokio::fs::read_to_string(file)
            .await
            .map_err(|error| TokenError::Read {
                source_name: format!("AZURE_FEDERATED_TOKEN_FILE {}", file.display()),
                error,
            })?;
        Ok(Zeroizing::new(text.trim().to_owned()))
    }

    /// The client-credentials grant, with a secret or a federated assertion.
    async fn post(
        &self,
        tenant: &str,
        client_id: &str,
        kind: &str,
        value: &str,
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let authority = env("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.into());
        if !authority.starts_with("https://") {
            return Err(self.error("AZURE_AUTHORITY_HOST must be an https URL".into()));
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            authority.trim_end_matches('/'),
            http::form_encode(tenant)
        );
        let e = http::form_encode;
        let mut form = format!(
            "grant_type=client_credentials&client_id={}&scope={}",
            e(client_id),
            e(&self.settings.scope)
        );
        if kind == "client_assertion" {
            form.push_str("&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer");
        }
        let form = Zeroizing::new(format!("{form}&{kind}={}", e(value)));
        self.send(http::Request {
            url: &url,
            headers: &[],
            form: Some(form),
        })
        .await
    }

    async fn get(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        self.send(http::Request {
            url,
            headers,
            form: None,
        })
        .await
    }

    async fn send(&self, request: http::Request<'_>) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        http::fetch(request)
            .await
            .map_err(|reason| self.error(reason))
    }

    /// Names the source without looking at the environment (`describe` does).
    fn error(&self, reason: String) -> TokenError {
        TokenError::Cloud {
            source_name: format!("Entra ID (scope {})", self.settings.scope),
            reason,
        }
    }
}
