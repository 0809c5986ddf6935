//! `plugins.config.quotes`: limits and lookups, every key optional.

use serde::{Deserialize, Serialize};

/// The plugin's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Longest quote, in characters.
    pub max_length: usize,
    /// Most results `!quote search` lists.
    pub search_results: usize,
    /// Characters of each search result shown.
    pub preview_length: usize,
    /// Shortest text `!quote search` accepts, in characters.
    pub min_search_length: usize,
    /// Whether `!quote add` refuses a quote already in the channel.
    pub reject_duplicates: bool,
    /// Speakers per channel whose last line is remembered for `!quote grab`.
    pub remembered_speakers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_length: 500,
            search_results: 5,
            preview_length: 50,
            min_search_length: 3,
            reject_duplicates: true,
            remembered_speakers: 500,
        }
    }
}

impl Config {
    /// Checks the ranges serde cannot express; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_length == 0 {
            return Err("max_length must be at least 1".to_owned());
        }
        if !(1..=20).contains(&self.search_results) {
            return Err(format!(
                "search_results must be 1 to 20, not {}",
                self.search_results
            ));
        }
        if self.preview_length < 10 {
            return Err(format!(
                "preview_length must be at least 10, not {}",
                self.preview_length
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validation_and_typos() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.validate().is_ok());
        for bad in [
            r#"{"max_length": 0}"#,
            r#"{"search_results": 0}"#,
            r#"{"search_results": 99}"#,
            r#"{"preview_length": 2}"#,
        ] {
            let c: Config = serde_json::from_str(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Config>(r#"{"max_lenght": 5}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"max_length": "big"}"#).is_err());
    }
}
