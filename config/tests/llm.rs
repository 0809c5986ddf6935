//! The `llm` section: the original's whole block loads typed, mistakes are errors with the key
//! path, the system prompt file is read, and the split between gateway and plugin holds.

mod common;

use std::fs;

use rosey_config::{Config, LlmProvider, SpecificUser};
use serde_json::json;

use common::{assert_rejects, load};

/// The original's `llm` block with every key of section 7 of the reference.
fn original_block(prompt_file: &str) -> serde_json::Value {
    json!({
        "enabled": true,
        "provider": "openrouter",
        "system_prompt_file": prompt_file,
        "max_context_messages": 8,
        "temperature": 0.9,
        "max_tokens": 300,
        "log_only": true,
        "openai": {"api_key": "sk-openai-6021", "model": "gpt-4o", "base_url": "http://127.0.0.1:9/v1"},
        "ollama": {"base_url": "http://127.0.0.1:11434", "model": "llama3.2"},
        "openrouter": {"api_key": "sk-or-5810", "model": "meta/llama", "site_url": "https://example.org", "site_name": "Rosey"},
        "triggers": {
            "enabled": true,
            "direct_mention": true,
            "commands": ["!ai", "!ask", "!gpt"],
            "ambient_chat": {"enabled": true, "every_n_messages": 25, "randomness": 0.3},
            "keywords": [{"phrases": ["hello bot", "rosey?"], "probability": 0.5, "cooldown_seconds": 120}],
            "greetings": {
                "enabled": true,
                "on_join": {"enabled": true, "probability": 0.4, "idle_threshold_minutes": 30,
                             "moderators_only": true, "specific_users": {"alice": 1.0, "bob": "hey bob"}},
                "on_status_change": {"enabled": false, "probability": 0.1}
            }
        }
    })
}

#[test]
fn the_original_block_loads_typed_with_the_prompt_text() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("prompt.txt"), "You are Rosey.\n").unwrap();
    let path = dir.path().join("config.json");
    fs::write(
        &path,
        json!({"llm": original_block("prompt.txt")}).to_string(),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let llm = &config.llm;
    assert!(llm.enabled);
    assert_eq!(llm.provider, LlmProvider::Openrouter);
    assert_eq!(llm.system_prompt.as_deref(), Some("You are Rosey."));
    assert_eq!(
        llm.openrouter.api_key.as_ref().unwrap().expose(),
        "sk-or-5810"
    );
    assert_eq!(llm.openrouter.site_name.as_deref(), Some("Rosey"));
    assert_eq!(llm.default_model(), "meta/llama");
    assert_eq!(llm.triggers.commands, ["!ai", "!ask", "!gpt"]);
    assert_eq!(llm.triggers.ambient_chat.every_n_messages, 25);
    assert_eq!(llm.triggers.keywords[0].cooldown_seconds, 120.0);
    let users = &llm.triggers.greetings.on_join.specific_users;
    assert_eq!(users["alice"], SpecificUser::Probability(1.0));
    assert_eq!(users["bob"], SpecificUser::Greeting("hey bob".to_owned()));
    assert!(!llm.triggers.greetings.on_status_change.enabled);

    // The plugin's part carries the prompt text and the triggers, and no key or provider.
    let plugin = serde_json::to_value(llm.plugin_settings()).unwrap();
    assert_eq!(plugin["system_prompt"], "You are Rosey.");
    assert_eq!(plugin["max_context_messages"], 8);
    assert_eq!(plugin["log_only"], true);
    assert_eq!(plugin["triggers"]["keywords"][0]["probability"], 0.5);
    let text = plugin.to_string();
    for hidden in ["sk-or-5810", "sk-openai-6021", "openrouter", "base_url"] {
        assert!(
            !text.contains(hidden),
            "plugin settings show {hidden}: {text}"
        );
    }
    // Neither Debug nor the printed configuration shows a key.
    let debug = format!("{config:?}");
    let printed = config.to_redacted_json().to_string();
    for secret in ["sk-or-5810", "sk-openai-6021"] {
        assert!(!debug.contains(secret));
        assert!(!printed.contains(secret));
    }
    assert_eq!(
        config.to_redacted_json()["llm"]["openrouter"]["api_key"],
        "***"
    );
}

#[test]
fn unknown_keys_are_errors_with_their_path() {
    assert_rejects(r#"{"llm": {"bogus": 1}}"#, "llm.bogus", "unknown field");
    assert_rejects(
        r#"{"llm": {"triggers": {"greetings": {"on_join": {"probabilty": 0.5}}}}}"#,
        "llm.triggers.greetings.on_join.probabilty",
        "unknown field",
    );
    assert_rejects(
        r#"{"llm": {"provider": "gemini"}}"#,
        "llm.provider",
        "unknown variant",
    );
    assert_rejects(r#"{"llm": {"openai": [1]}}"#, "llm.openai", "sequence");
}

#[test]
fn values_out_of_range_are_errors() {
    assert_rejects(
        r#"{"llm": {"temperature": 3}}"#,
        "llm.temperature",
        "between 0 and 2",
    );
    assert_rejects(
        r#"{"llm": {"triggers": {"keywords": [{"phrases": ["x"], "probability": 1.5}]}}}"#,
        "llm.triggers.keywords[0].probability",
        "between 0 and 1",
    );
    assert_rejects(
        r#"{"llm": {"gateway": {"concurrency": 0}}}"#,
        "llm.gateway.concurrency",
        "greater than 0",
    );
    assert_rejects(
        r#"{"llm": {"enabled": true, "provider": "openrouter"}}"#,
        "llm.openrouter.api_key",
        "required",
    );
    assert_rejects(
        r#"{"llm": {"enabled": true, "provider": "openai", "openai": {"base_url": "ftp://x"}}}"#,
        "llm.openai.base_url",
        "http",
    );
    assert_rejects(
        r#"{"llm": {"triggers": {"keywords": [{"phrases": ["x"], "cooldown_seconds": -1}]}}}"#,
        "llm.triggers.keywords[0].cooldown_seconds",
        "non-negative",
    );
    assert_rejects(
        r#"{"llm": {"triggers": {"greetings": {"on_status_change": {"probability": 2}}}}}"#,
        "llm.triggers.greetings.on_status_change.probability",
        "between 0 and 1",
    );
    // A disabled section need not be complete.
    assert!(load(r#"{"llm": {"enabled": false, "provider": "openrouter"}}"#).is_ok());
}

/// The configuration and the plugin read the one trigger type of the contract: what the
/// loader hands the plugin decodes as the plugin's own settings, unchanged.
#[test]
fn the_plugin_reads_the_triggers_the_loader_validated() {
    let config = load(
        r#"{"llm": {"triggers": {"keywords": [{"phrases": ["rust"], "cooldown_seconds": 2.5}],
            "greetings": {"enabled": true, "on_status_change": {"enabled": true, "probability": 0.5}}}}}"#,
    )
    .unwrap();
    let settings = serde_json::to_value(config.llm.plugin_settings()).unwrap();
    let triggers: rosey_plugin_api::llm::Triggers =
        serde_json::from_value(settings["triggers"].clone()).unwrap();
    assert_eq!(triggers, config.llm.triggers);
    assert_eq!(triggers.keywords[0].cooldown_seconds, 2.5);
    assert!(triggers.greetings.on_status_change.enabled);
}

#[test]
fn a_missing_prompt_file_is_an_error_only_when_enabled() {
    assert_rejects(
        r#"{"llm": {"enabled": true, "system_prompt_file": "/nonexistent/rosey-prompt.txt"}}"#,
        "llm.system_prompt_file",
        "cannot read",
    );
    let off = load(r#"{"llm": {"system_prompt_file": "/nonexistent/rosey-prompt.txt"}}"#).unwrap();
    assert!(off.llm.system_prompt.is_none());
}

#[test]
fn the_printed_section_loads_again() {
    let config = load(r#"{"llm": {"enabled": true, "provider": "ollama"}}"#).unwrap();
    let printed = config.to_redacted_json();
    let again = load(&json!({"llm": printed["llm"]}).to_string()).unwrap();
    assert_eq!(again.llm, config.llm);
}
