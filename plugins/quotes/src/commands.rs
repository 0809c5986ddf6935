//! `!quote` and its sub-commands, parsed from the text after the command word (spacing kept,
//! so a quote is stored as typed).

/// What a `!quote` line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuoteCommand {
    /// A random quote.
    Random,
    /// The quote with this id.
    Get(u64),
    /// Add a quote, with its author when given after ` -- `.
    Add {
        /// The quote.
        text: String,
        /// Who said it.
        author: Option<String>,
    },
    /// A random quote by this author.
    By(String),
    /// Quotes containing this text.
    Search(String),
    /// Quote this user's last line in the channel.
    Grab(String),
    /// Delete the quote with this id.
    Delete(u64),
    /// How many quotes there are.
    Count,
    /// How to use it.
    Help,
}

/// The `!quote help` answer.
pub const HELP: &str = "!quote [id] | !quote add <text> [-- <author>] | !quote by <author> | \
     !quote search <text> | !quote grab <user> | !quote del <id> | !quote count";

/// Parses the text after `!quote`; the error is the reply that explains the misuse.
pub fn parse(text: &str) -> Result<QuoteCommand, String> {
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    };
    let no_args = |cmd: QuoteCommand, name: &str| {
        if rest.is_empty() {
            Ok(cmd)
        } else {
            Err(format!("!quote {name} takes no arguments"))
        }
    };
    match word.to_lowercase().as_str() {
        "" | "random" => no_args(QuoteCommand::Random, "random"),
        "count" => no_args(QuoteCommand::Count, "count"),
        "help" => no_args(QuoteCommand::Help, "help"),
        "add" => parse_add(rest),
        // Authors may have spaces ("-- Mark Twain"), so the whole rest is the name.
        "by" if rest.is_empty() => Err("usage: !quote by <author>".to_owned()),
        "by" => Ok(QuoteCommand::By(rest.trim_start_matches('@').to_owned())),
        "grab" => one_name(rest, "usage: !quote grab <user>").map(QuoteCommand::Grab),
        "search" if rest.is_empty() => Err("usage: !quote search <text>".to_owned()),
        "search" => Ok(QuoteCommand::Search(rest.to_owned())),
        "del" | "delete" => parse_id(rest)
            .map(QuoteCommand::Delete)
            .ok_or_else(|| "usage: !quote del <id>".to_owned()),
        "get" => parse_id(rest)
            .map(QuoteCommand::Get)
            .ok_or_else(|| "usage: !quote <id>".to_owned()),
        _ => match parse_id(text) {
            Some(id) => Ok(QuoteCommand::Get(id)),
            None => Err(format!("I don't know !quote {}; {HELP}", shorten(word, 20))),
        },
    }
}

fn parse_add(rest: &str) -> Result<QuoteCommand, String> {
    let usage = "usage: !quote add <text> [-- <author>]";
    if rest.is_empty() {
        return Err(format!("the quote is empty; {usage}"));
    }
    // Padding lets " -- " match at the start ("-- bob" has no text); a trailing "--" with no
    // author after it is part of the text (`'; DROP TABLE x; --` is a fine quote).
    let padded = format!(" {rest}");
    let (text, author) = match padded.rsplit_once(" -- ") {
        Some((text, author)) if !author.trim().is_empty() => (text.trim(), Some(author.trim())),
        _ => (rest, None),
    };
    if text.is_empty() {
        return Err(format!("the quote is empty; {usage}"));
    }
    Ok(QuoteCommand::Add {
        text: text.to_owned(),
        author: author.map(str::to_owned),
    })
}

fn one_name(rest: &str, usage: &str) -> Result<String, String> {
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(usage.to_owned());
    }
    Ok(rest.trim_start_matches('@').to_owned())
}

fn parse_id(text: &str) -> Option<u64> {
    text.trim().trim_start_matches('#').parse().ok()
}

/// `text` cut to `chars` characters, so an echoed argument cannot flood the chat.
pub fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(chars).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        assert_eq!(parse(""), Ok(QuoteCommand::Random));
        assert_eq!(parse("  random "), Ok(QuoteCommand::Random));
        assert_eq!(parse("12"), Ok(QuoteCommand::Get(12)));
        assert_eq!(parse("#12"), Ok(QuoteCommand::Get(12)));
        assert_eq!(parse("get 3"), Ok(QuoteCommand::Get(3)));
        assert_eq!(
            parse("add  hello   world "),
            Ok(QuoteCommand::Add {
                text: "hello   world".into(),
                author: None
            })
        );
        assert_eq!(
            parse("ADD to be -- or not -- Hamlet"),
            Ok(QuoteCommand::Add {
                text: "to be -- or not".into(),
                author: Some("Hamlet".into())
            })
        );
        assert_eq!(
            parse("add x; -- "),
            Ok(QuoteCommand::Add {
                text: "x; --".into(),
                author: None
            })
        );
        assert_eq!(parse("by @Ann"), Ok(QuoteCommand::By("Ann".into())));
        assert_eq!(
            parse("by Mark  Twain"),
            Ok(QuoteCommand::By("Mark  Twain".into()))
        );
        assert_eq!(
            parse("search The Cake"),
            Ok(QuoteCommand::Search("The Cake".into()))
        );
        assert_eq!(parse("grab bob"), Ok(QuoteCommand::Grab("bob".into())));
        assert_eq!(parse("del 4"), Ok(QuoteCommand::Delete(4)));
        assert_eq!(parse("delete #4"), Ok(QuoteCommand::Delete(4)));
        assert_eq!(parse("count"), Ok(QuoteCommand::Count));
        assert_eq!(parse("help"), Ok(QuoteCommand::Help));
    }

    #[test]
    fn misuse_gets_an_explanation() {
        for (line, expect) in [
            ("add", "empty"),
            ("add    ", "empty"),
            ("add -- bob", "empty"),
            ("by", "usage"),
            ("grab two names", "usage"),
            ("grab", "usage"),
            ("search", "usage"),
            ("del", "usage"),
            ("del x", "usage"),
            ("del -1", "usage"),
            ("get", "usage"),
            ("count 3", "no arguments"),
            ("help me", "no arguments"),
            ("frobnicate", "don't know"),
            ("-5", "don't know"),
            ("99999999999999999999999", "don't know"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(expect), "{line:?}: {e}");
        }
        let e = parse(&"x".repeat(5000)).unwrap_err();
        assert!(e.len() < 300, "echoes are short: {}", e.len());
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("héllo", 2), "hé…");
        assert_eq!(shorten("ok", 2), "ok");
    }
}
