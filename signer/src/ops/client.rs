//! The operator's client of the signer API, shared by `signer token …` and
//! `signer stats`: the signer's URL and the operator credential, which comes from
//! `BMAT_OPERATOR_TOKEN` and never from the command line (which `ps` shows).

use std::time::Duration;

use anyhow::{Context, bail};
use bmat_wire::api::ErrorBody;
use clap::Args;

#[derive(Args)]
pub struct Target {
    /// The signer's base URL.
    #[arg(long, env = "BMAT_SIGNER_URL", default_value = "http://127.0.0.1:8080")]
    signer: String,
    /// The operator credential (from the environment only).
    #[arg(long, env = "BMAT_OPERATOR_TOKEN", hide_env_values = true, hide = true)]
    operator_token: String,
}

impl Target {
    /// One API call: the JSON answer, or an error with the signer's one-line message.
    pub async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Req>,
    ) -> anyhow::Result<Resp> {
        let url = format!("{}{path}", self.signer.trim_end_matches('/'));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let mut req = http
            .request(method.clone(), &url)
            .bearer_auth(&self.operator_token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let answer = req
            .send()
            .await
            .with_context(|| format!("{method} {url}: no answer"))?;
        let status = answer.status();
        let text = answer.text().await?;
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|b| b.error)
                .unwrap_or(text);
            bail!("{method} {url}: {status}: {message}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: unexpected answer"))
    }
}
