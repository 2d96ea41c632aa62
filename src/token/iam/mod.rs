//! IAM authentication for ElastiCache and MemoryDB: the token is signed by the proxy with the
//! AWS credentials the platform gives it (environment, profile, IRSA web identity, ECS task
//! role or EKS Pod Identity, instance profile: the SDK's default chain), and stored like any
//! other token, so the handshake, fallback, metrics and health work unchanged.
//!
//! `sign` makes a token from credentials and a time; `schedule` says when to fetch credentials
//! and when to sign again; `IamSource` does both, holding the credentials between calls.

mod schedule;
mod sign;

pub use schedule::{FETCH_AHEAD, RESIGN_EVERY};
pub use sign::{Service, SignError, TOKEN_LIFETIME, TokenRequest};

use super::{Credentials, TokenError};
use crate::metrics;
use crate::secret::Token;
use aws_credential_types::Credentials as AwsCredentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use schedule::{Held, Step};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::OnceCell;

/// The longest a credentials fetch may take (IMDS, STS, the container endpoint).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What to sign for: `--iam-service`, `--iam-cache-name`, `--iam-serverless`, `--username`,
/// `--iam-region`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamSettings {
    pub service: Service,
    pub cache_name: String,
    pub user_id: String,
    pub serverless: bool,
    /// `None`: the AWS configuration's region.
    pub region: Option<String>,
}

/// Signs tokens for one IAM user of one cache.
#[derive(Clone)]
pub struct IamSource {
    settings: IamSettings,
    aws: Arc<OnceCell<Aws>>,
    state: Arc<Mutex<State>>,
}

/// The SDK's credential chain and the region, resolved once.
struct Aws {
    provider: SharedCredentialsProvider,
    request: TokenRequest,
}

/// The credentials and token held between calls. The token and credentials are redacting,
/// zeroising types.
#[derive(Default)]
struct State {
    held: Option<Held>,
    credentials: Option<AwsCredentials>,
    token: Option<Token>,
}

impl fmt::Debug for IamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamSource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl IamSource {
    pub fn new(settings: IamSettings) -> Self {
        IamSource {
            settings,
            aws: Arc::new(OnceCell::new()),
            state: Arc::default(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "IAM ({} {} as {})",
            self.settings.service.signing_name(),
            self.settings.cache_name,
            self.settings.user_id
        )
    }

    /// The current token: the one held while it is good, else a new one, signed with the
    /// credentials held or, when those near their end (or `fresh`: the server refused the
    /// token), with credentials fetched now.
    pub async fn load(&self, fresh: bool) -> Result<Credentials, TokenError> {
        let aws = self.aws.get_or_try_init(|| self.resolve()).await?;
        let now = SystemTime::now();
        let (step, held_credentials, fetched_at) = {
            let state = self.state.lock().expect("iam state");
            let step = schedule::step(state.held.as_ref(), now, fresh);
            if step == Step::Keep
                && let (Some(held), Some(token)) = (state.held, &state.token)
            {
                return Ok(self.credentials(token.clone(), &held));
            }
            let fetched_at = state.held.map(|held| held.fetched_at);
            (step, state.credentials.clone(), fetched_at)
        };
        let (credentials, fetched_at) = match (step, held_credentials, fetched_at) {
            (Step::Sign, Some(credentials), Some(fetched_at)) => (credentials, fetched_at),
            _ => (self.fetch(aws).await?, now),
        };
        let token = aws.request.sign(&credentials, now).map_err(|e| {
            metrics::PROCESS.iam_signed("sign_error");
            self.error(e.to_string())
        })?;
        metrics::PROCESS.iam_signed("ok");
        let held = Held {
            fetched_at,
            expires: credentials.expiry(),
            signed_at: now,
        };
        let mut state = self.state.lock().expect("iam state");
        state.held = Some(held);
        state.credentials = Some(credentials);
        state.token = Some(token.clone());
        Ok(self.credentials(token, &held))
    }

    /// How long until `load` would do something new; `None` before the first load.
    pub fn due_in(&self) -> Option<Duration> {
        let state = self.state.lock().expect("iam state");
        state.held.map(|held| held.due_in(SystemTime::now()))
    }

    fn credentials(&self, token: Token, held: &Held) -> Credentials {
        Credentials {
            username: Some(self.settings.user_id.clone()),
            current: token,
            previous: None,
            expires: Some(held.token_expires()),
        }
    }

    async fn fetch(&self, aws: &Aws) -> Result<AwsCredentials, TokenError> {
        let fetched = tokio::time::timeout(FETCH_TIMEOUT, aws.provider.provide_credentials()).await;
        let credentials = match fetched {
            Ok(Ok(credentials)) => credentials,
            Ok(Err(error)) => {
                metrics::PROCESS.iam_signed("credentials_error");
                let error = aws_sdk_secretsmanager::error::DisplayErrorContext(&error);
                return Err(self.error(format!("no AWS credentials: {error}")));
            }
            Err(_) => {
                metrics::PROCESS.iam_signed("credentials_error");
                return Err(TokenError::Timeout {
                    source_name: format!("{} credentials", self.describe()),
                    after: FETCH_TIMEOUT,
                });
            }
        };
        metrics::PROCESS.iam_credentials_expire(credentials.expiry());
        Ok(credentials)
    }

    /// The credential chain and the region, from the AWS configuration.
    async fn resolve(&self) -> Result<Aws, TokenError> {
        let sdk = super::aws::sdk_config().await;
        let region = match (&self.settings.region, sdk.region()) {
            (Some(region), _) => region.clone(),
            (None, Some(region)) => region.to_string(),
            (None, None) => {
                return Err(self.error(
                    "no AWS region: set --iam-region, AWS_REGION or a profile's region".into(),
                ));
            }
        };
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| self.error("the AWS configuration has no credential chain".into()))?;
        let s = &self.settings;
        Ok(Aws {
            provider,
            request: TokenRequest::new(s.service, &s.cache_name, &s.user_id, s.serverless, &region),
        })
    }

    fn error(&self, reason: String) -> TokenError {
        TokenError::Aws {
            source_name: self.describe(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_the_settings_but_no_credential_or_token() {
        let source = IamSource::new(IamSettings {
            service: Service::ElastiCache,
            cache_name: "my-cache".into(),
            user_id: "app-user".into(),
            serverless: false,
            region: Some("eu-west-1".into()),
        });
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let session = "session-token-secret-part";
        let credentials =
            AwsCredentials::new("AKIDEXAMPLE", secret, Some(session.into()), None, "t");
        let request = TokenRequest::new(
            Service::ElastiCache,
            "my-cache",
            "app-user",
            false,
            "eu-west-1",
        );
        let token = request.sign(&credentials, SystemTime::now()).unwrap();
        let signature = token
            .expose()
            .rsplit_once("X-Amz-Signature=")
            .unwrap()
            .1
            .to_owned();
        {
            let mut state = source.state.lock().unwrap();
            state.credentials = Some(credentials.clone());
            state.token = Some(token.clone());
        }
        let shown = format!("{source:?} {credentials:?} {token:?}");
        assert!(
            shown.contains("my-cache") && shown.contains("app-user"),
            "{shown}"
        );
        for hidden in [secret, session, &signature[..16]] {
            assert!(!shown.contains(hidden), "{hidden} shown in {shown}");
        }
    }
}
