//! Chat commands: what the bot publishes on `rosey.commands.<name>`.

use crate::subjects::is_command_name;
use crate::time::Timestamp;
use crate::user::UserData;
use serde::{Deserialize, Serialize};

/// A command line typed in chat or sent by PM, split once so no plugin parses it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// The lower-cased command word, without the prefix.
    pub command: String,
    /// The words after the command word.
    pub args: Vec<String>,
    /// The rest of the line after the command word, spacing kept.
    pub text: String,
    /// The whole decoded line, prefix included.
    pub raw: String,
    /// Who typed it.
    pub user: String,
    /// Who typed it, with rank.
    pub user_data: UserData,
    /// Whether it came by PM (answer by PM) or in chat (answer in chat).
    pub is_pm: bool,
    /// The platform's name.
    pub platform: String,
    /// The channel.
    pub channel: String,
    /// When it was typed.
    pub timestamp: Timestamp,
}

/// A line split into its command word and the rest, before the envelope is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    /// The lower-cased command word.
    pub command: String,
    /// The words after it.
    pub args: Vec<String>,
    /// The rest of the line after the command word.
    pub text: String,
}

/// Splits `line` when it starts with `prefix` and a valid command word; `None` otherwise
/// (a plain line, a bare prefix, or a word that is not a command name).
pub fn parse_command_line(line: &str, prefix: &str) -> Option<ParsedCommand> {
    let rest = line.strip_prefix(prefix)?;
    let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let command = rest[..word_end].to_lowercase();
    if !is_command_name(&command) {
        return None;
    }
    let text = rest[word_end..].trim().to_owned();
    let args = text.split_whitespace().map(str::to_owned).collect();
    Some(ParsedCommand {
        command,
        args,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_word_args_and_text() {
        let p = parse_command_line("!Quote add  hello  world", "!").unwrap();
        assert_eq!(p.command, "quote");
        assert_eq!(p.args, ["add", "hello", "world"]);
        assert_eq!(p.text, "add  hello  world");
        let p = parse_command_line("!help", "!").unwrap();
        assert!(p.args.is_empty() && p.text.is_empty());
    }

    #[test]
    fn rejects_non_commands() {
        for line in ["hello", "!", "! x", "!a.b", "!rosey.>", "!émoji", "!!x"] {
            assert_eq!(parse_command_line(line, "!"), None, "{line:?}");
        }
        assert!(parse_command_line("$x", "$").is_some());
    }
}
