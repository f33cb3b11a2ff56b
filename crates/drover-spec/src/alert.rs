//! `[[alert]]` rules in `drover.toml`: what `drover serve` tells a webhook
//! about. Checked when the project loads, so a malformed rule is refused at
//! start with the file and line, never discovered when it should fire.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::{parse_duration, SpecError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AlertFile {
    pub name: Option<Spanned<String>>,
    pub on: Spanned<String>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<Spanned<String>>,
    pub webhook: Spanned<String>,
    /// `json` (default) or `slack`.
    pub format: Option<Spanned<String>>,
}

/// What a rule watches, per host (the first four) or per rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertOn {
    Unreachable,
    Unhealthy,
    Drifted,
    ApplyFailed,
    RolloutFailed,
    RolloutPaused,
}

impl AlertOn {
    const NAMES: [(&'static str, AlertOn); 6] = [
        ("unreachable", AlertOn::Unreachable),
        ("unhealthy", AlertOn::Unhealthy),
        ("drifted", AlertOn::Drifted),
        ("apply-failed", AlertOn::ApplyFailed),
        ("rollout-failed", AlertOn::RolloutFailed),
        ("rollout-paused", AlertOn::RolloutPaused),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES.iter().find(|(_, v)| *v == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// `{"alert", "status": "firing"|"resolved", "on", "subject", "detail", "at_ms"}`
    Json,
    /// Slack incoming-webhook payload (`{"text": …}`).
    Slack,
}

#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub on: AlertOn,
    pub hold: Duration,
    pub webhook: String,
    pub format: AlertFormat,
}

pub(crate) fn resolve(files: &[AlertFile], file: &str, text: &str) -> Result<Vec<AlertRule>, SpecError> {
    let mut rules: Vec<AlertRule> = Vec::new();
    for (i, a) in files.iter().enumerate() {
        let err = |s: &Spanned<String>, msg: String, help: &str| SpecError::at(file, text, s.span(), msg, "here", help);
        let names: Vec<&str> = AlertOn::NAMES.iter().map(|(n, _)| *n).collect();
        let on = AlertOn::NAMES.iter().find(|(n, _)| *n == a.on.get_ref()).map(|(_, v)| *v).ok_or_else(|| {
            err(
                &a.on,
                format!("unknown alert condition `{}`", a.on.get_ref()),
                &format!("use one of {}", names.join(", ")),
            )
        })?;
        let hold = match &a.hold {
            None => Duration::ZERO,
            Some(h) => parse_duration(h.get_ref()).map_err(|m| err(h, m, "write a duration such as 30s or 5m"))?,
        };
        let url = a.webhook.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(err(
                &a.webhook,
                format!("webhook `{url}` is not an http(s) URL"),
                "write the full URL, e.g. https://hooks.slack.com/services/…",
            ));
        }
        let format = match a.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "json")) => AlertFormat::Json,
            Some((_, "slack")) => AlertFormat::Slack,
            Some((f, other)) => return Err(err(f, format!("unknown webhook format `{other}`"), "use json or slack")),
        };
        let name = a.name.as_ref().map(|n| n.get_ref().clone()).unwrap_or_else(|| format!("{}-{}", on.as_str(), i + 1));
        if let Some(n) = a.name.as_ref().filter(|_| rules.iter().any(|r| r.name == name)) {
            return Err(err(n, format!("a second alert named `{name}`"), "give each [[alert]] its own name"));
        }
        rules.push(AlertRule { name, on, hold, webhook: url.clone(), format });
    }
    Ok(rules)
}
