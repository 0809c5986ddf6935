//! Deciding from a chat line alone whether it addresses the bot, and what the prompt is.

/// The prompt of a line that names the bot (`name` anywhere, as a whole word, any case), with
/// the name and the punctuation around it stripped; `None` when the line does not name it.
pub fn mention_prompt(line: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let lower = line.to_lowercase();
    let wanted = name.to_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(&wanted) {
        let start = from + found;
        let end = start + wanted.len();
        let before_ok = lower[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !is_name_char(c));
        let after_ok = lower[end..].chars().next().is_none_or(|c| !is_name_char(c));
        if before_ok && after_ok && line.is_char_boundary(start) && line.is_char_boundary(end) {
            let head = line[..start].trim_end_matches(['@', ' ']);
            let tail = line[end..].trim_start_matches([',', ':', ';', '!', '?', '.', ' ']);
            let prompt = match (head.trim().is_empty(), tail.trim().is_empty()) {
                (true, _) => tail.trim().to_owned(),
                (false, true) => head.trim().trim_end_matches([',', ' ']).to_owned(),
                (false, false) => format!("{} {}", head.trim(), tail.trim()),
            };
            return Some(prompt);
        }
        from = end;
    }
    None
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// The first phrase found in `line` (case-insensitive), if any.
pub fn matching_phrase<'a>(line: &str, phrases: &'a [String]) -> Option<&'a str> {
    let lower = line.to_lowercase();
    phrases
        .iter()
        .find(|p| !p.trim().is_empty() && lower.contains(&p.to_lowercase()))
        .map(String::as_str)
}

/// The command names (without the prefix) of the configured commands; entries that are not
/// the prefix followed by a name are left out.
pub fn command_names(commands: &[String], prefix: &str) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| c.strip_prefix(prefix).or(Some(c.as_str())))
        .map(|c| c.trim().to_lowercase())
        .filter(|c| rosey_plugin_api::subjects::is_command_name(c))
        .collect()
}

/// Whether `user` is a server notice (`[server]` and the like) rather than a person.
pub fn is_server_line(user: &str) -> bool {
    user.is_empty() || (user.starts_with('[') && user.ends_with(']'))
}

/// Cuts `text` to at most `max` characters, ending with an ellipsis when it was cut.
pub fn cap(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_as_whole_words_and_stripped() {
        assert_eq!(
            mention_prompt("Rosey, what is 2+2?", "rosey").as_deref(),
            Some("what is 2+2?")
        );
        assert_eq!(
            mention_prompt("@rosey: hi there", "Rosey").as_deref(),
            Some("hi there")
        );
        assert_eq!(
            mention_prompt("what do you think, ROSEY?", "rosey").as_deref(),
            Some("what do you think")
        );
        assert_eq!(
            mention_prompt("tell me rosey how it works", "rosey").as_deref(),
            Some("tell me how it works")
        );
        assert_eq!(mention_prompt("roseybud is here", "rosey"), None);
        assert_eq!(mention_prompt("no name here", "rosey"), None);
        assert_eq!(mention_prompt("anything", ""), None);
    }

    #[test]
    fn phrases_match_case_insensitively() {
        let phrases = vec!["pizza".to_owned(), "Good Night".to_owned()];
        assert_eq!(matching_phrase("I want PIZZA now", &phrases), Some("pizza"));
        assert_eq!(
            matching_phrase("good night all", &phrases),
            Some("Good Night")
        );
        assert_eq!(matching_phrase("hello", &phrases), None);
        assert_eq!(matching_phrase("x", &[" ".to_owned()]), None);
    }

    #[test]
    fn command_names_drop_the_prefix_and_bad_entries() {
        let list = vec!["!ai".to_owned(), "!Ask".to_owned(), "!bad name".to_owned()];
        assert_eq!(command_names(&list, "!"), ["ai", "ask"]);
    }

    #[test]
    fn server_lines_and_caps() {
        assert!(is_server_line("[server]"));
        assert!(!is_server_line("ann"));
        assert_eq!(cap("  short  ", 10), "short");
        assert_eq!(cap("abcdefghij", 5), "abcd…");
    }
}
