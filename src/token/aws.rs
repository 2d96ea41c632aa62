//! AWS Secrets Manager: AWSCURRENT is the current token, AWSPREVIOUS the previous one.
//!
//! Credentials and region come from the standard AWS chain (environment, profile, IRSA web
//! identity, ECS/EKS container credentials); `AWS_ENDPOINT_URL` is honoured by that chain. When
//! no region is configured and the secret is named by ARN, the ARN's region is used. The SDK
//! uses ring through rustls, like the rest of the proxy.

use super::{Credentials, TokenError, parse_credentials};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Region;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Reads a secret's AWSCURRENT and AWSPREVIOUS versions.
#[derive(Clone)]
pub struct SecretsManagerSource {
    pub secret_id: String,
    pub json_key: Option<String>,
    client: Arc<OnceCell<Client>>,
}

impl fmt::Debug for SecretsManagerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsManagerSource")
            .field("secret_id", &self.secret_id)
            .field("json_key", &self.json_key)
            .finish_non_exhaustive()
    }
}

impl SecretsManagerSource {
    pub fn new(secret_id: String, json_key: Option<String>) -> Self {
        SecretsManagerSource {
            secret_id,
            json_key,
            client: Arc::new(OnceCell::new()),
        }
    }

    pub fn describe(&self) -> String {
        format!("Secrets Manager secret {}", self.secret_id)
    }

    pub async fn load(&self) -> Result<Credentials, TokenError> {
        let client = self
            .client
            .get_or_init(|| build_client(&self.secret_id))
            .await;
        let current = self
            .fetch(client, "AWSCURRENT")
            .await?
            .ok_or_else(|| TokenError::Empty {
                source_name: self.describe(),
            })?;
        let mut credentials =
            parse_credentials(current, self.json_key.as_deref(), &self.describe())?;
        // A missing or unreadable AWSPREVIOUS is normal (a secret with one version) and must
        // not stop the current token from being used.
        if let Ok(Some(previous)) = self.fetch(client, "AWSPREVIOUS").await {
            let name = format!("{} (AWSPREVIOUS)", self.describe());
            if let Ok(previous) = parse_credentials(previous, self.json_key.as_deref(), &name) {
                credentials.previous = Some(previous.current);
            }
        }
        Ok(credentials)
    }

    /// One stage's secret string; `None` when the stage does not exist.
    async fn fetch(&self, client: &Client, stage: &str) -> Result<Option<String>, TokenError> {
        let request = client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage(stage);
        match request.send().await {
            Ok(mut output) => Ok(match output.secret_string.take() {
                Some(text) => Some(text),
                None => output
                    .secret_binary
                    .take()
                    .and_then(|blob| String::from_utf8(blob.into_inner()).ok()),
            }),
            Err(error)
                if stage != "AWSCURRENT"
                    && error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(TokenError::Aws {
                source_name: self.describe(),
                reason: format!("GetSecretValue {stage}: {}", DisplayErrorContext(&error)),
            }),
        }
    }
}

async fn build_client(secret_id: &str) -> Client {
    let sdk = sdk_config().await;
    let mut config = aws_sdk_secretsmanager::config::Builder::from(&sdk);
    if sdk.region().is_none()
        && let Some(region) = region_from_arn(secret_id)
    {
        config = config.region(Region::new(region.to_owned()));
    }
    Client::from_conf(config.build())
}

/// The AWS SDK's configuration from the standard chain (credentials, region, endpoint URLs),
/// with ring through rustls and timeouts on every call.
pub(super) async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(15))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .load()
        .await
}

/// `arn:aws:secretsmanager:<region>:<account>:secret:<name>` → `<region>`.
fn region_from_arn(secret_id: &str) -> Option<&str> {
    let mut parts = secret_id.split(':');
    (parts.next() == Some("arn")).then_some(())?;
    let region = parts.nth(2)?;
    (!region.is_empty()).then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_is_read_from_an_arn() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:redis-token-AbCdEf";
        assert_eq!(region_from_arn(arn), Some("eu-west-1"));
        assert_eq!(region_from_arn("redis-token"), None);
    }
}
