//! Media URLs to CyTube's `{id, type}` pairs, for `queue` (a subset of the web client's
//! `parseMediaLink`: the providers bots queue in practice, plus the `xx:id` shorthand).

/// A media item as CyTube's `queue` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLink {
    /// The provider's id (or the URL for raw files and streams).
    pub id: String,
    /// CyTube's two-letter type.
    pub kind: &'static str,
}

const SHORTHAND: [&str; 21] = [
    "yt", "yp", "vi", "dm", "sc", "li", "tw", "tv", "tc", "rt", "hl", "cu", "gd", "fi", "cm", "sb",
    "pt", "bc", "bn", "od", "nv",
];

const RAW_EXTENSIONS: [&str; 8] = [
    ".mp4", ".flv", ".webm", ".ogg", ".ogv", ".mp3", ".mov", ".m4a",
];

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn first_segment(path: &str) -> Option<&str> {
    path.split(['/', '?', '#']).find(|s| !s.is_empty())
}

/// Parses a media URL; `None` when the provider is not recognised.
pub fn parse(url: &str) -> Option<MediaLink> {
    let url = url.trim();
    if let Some((kind, id)) = url.split_once(':') {
        if let Some(kind) = SHORTHAND.iter().find(|k| **k == kind) {
            if !id.is_empty() && !id.starts_with("//") {
                return Some(MediaLink {
                    id: id.to_owned(),
                    kind,
                });
            }
        }
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.to_lowercase();
    let host = host
        .strip_prefix("www.")
        .or_else(|| host.strip_prefix("m."))
        .unwrap_or(&host);
    let (path_only, query) = path.split_once('?').unwrap_or((path, ""));
    let link = |id: &str, kind| {
        Some(MediaLink {
            id: id.to_owned(),
            kind,
        })
    };
    match host {
        "youtube.com" | "music.youtube.com" => {
            if let Some(list) =
                query_param(query, "list").filter(|_| path_only.starts_with("playlist"))
            {
                return link(list, "yp");
            }
            if let Some(v) = query_param(query, "v") {
                return link(v, "yt");
            }
            let mut parts = path_only.split('/');
            match (parts.next(), parts.next()) {
                (Some("shorts" | "embed" | "live" | "v"), Some(id)) if !id.is_empty() => {
                    link(id, "yt")
                }
                _ => None,
            }
        }
        "youtu.be" => link(first_segment(path)?, "yt"),
        "vimeo.com" => {
            let id = path_only
                .split('/')
                .rfind(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?;
            link(id, "vi")
        }
        "dailymotion.com" => {
            let id = path_only.strip_prefix("video/")?;
            link(id.split('_').next()?, "dm")
        }
        "twitch.tv" => {
            let mut parts = path_only.split('/').filter(|s| !s.is_empty());
            match (parts.next(), parts.next(), parts.next()) {
                (Some("videos"), Some(id), _) => link(id, "tv"),
                (Some(_), Some("clip"), Some(id)) => link(id, "tc"),
                (Some(channel), None, _) => link(channel, "tw"),
                _ => None,
            }
        }
        "clips.twitch.tv" => link(first_segment(path)?, "tc"),
        "soundcloud.com" => Some(MediaLink {
            id: url.to_owned(),
            kind: "sc",
        }),
        "streamable.com" => link(first_segment(path)?, "sb"),
        "docs.google.com" | "drive.google.com" => {
            let mut parts = path_only.split('/');
            while let Some(p) = parts.next() {
                if p == "d" {
                    return link(parts.next().filter(|s| !s.is_empty())?, "gd");
                }
            }
            query_param(query, "id").and_then(|id| link(id, "gd"))
        }
        _ => {
            let lower = path_only.to_lowercase();
            if lower.ends_with(".m3u8") {
                Some(MediaLink {
                    id: url.to_owned(),
                    kind: "hl",
                })
            } else if lower.ends_with(".json") {
                Some(MediaLink {
                    id: url.to_owned(),
                    kind: "cm",
                })
            } else if RAW_EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
                Some(MediaLink {
                    id: url.to_owned(),
                    kind: "fi",
                })
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(url: &str) -> Option<(String, &'static str)> {
        parse(url).map(|m| (m.id, m.kind))
    }

    #[test]
    fn providers() {
        assert_eq!(
            p("https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=1"),
            Some(("dQw4w9WgXcQ".into(), "yt"))
        );
        assert_eq!(
            p("https://youtu.be/dQw4w9WgXcQ?t=3"),
            Some(("dQw4w9WgXcQ".into(), "yt"))
        );
        assert_eq!(
            p("https://m.youtube.com/shorts/abc"),
            Some(("abc".into(), "yt"))
        );
        assert_eq!(
            p("https://youtube.com/playlist?list=PL1"),
            Some(("PL1".into(), "yp"))
        );
        assert_eq!(p("yt:dQw4w9WgXcQ"), Some(("dQw4w9WgXcQ".into(), "yt")));
        assert_eq!(
            p("https://vimeo.com/channels/x/12345"),
            Some(("12345".into(), "vi"))
        );
        assert_eq!(
            p("https://www.dailymotion.com/video/x7abc_title"),
            Some(("x7abc".into(), "dm"))
        );
        assert_eq!(
            p("https://www.twitch.tv/videos/123"),
            Some(("123".into(), "tv"))
        );
        assert_eq!(
            p("https://twitch.tv/somechannel"),
            Some(("somechannel".into(), "tw"))
        );
        assert_eq!(
            p("https://docs.google.com/file/d/FILEID/edit"),
            Some(("FILEID".into(), "gd"))
        );
        assert_eq!(
            p("https://example.com/a/movie.MP4"),
            Some(("https://example.com/a/movie.MP4".into(), "fi"))
        );
        assert_eq!(
            p("https://example.com/live.m3u8"),
            Some(("https://example.com/live.m3u8".into(), "hl"))
        );
        assert_eq!(p("https://streamable.com/abc"), Some(("abc".into(), "sb")));
    }

    #[test]
    fn unknown_or_broken_links() {
        for bad in [
            "",
            "hello",
            "https://example.com/page",
            "ftp://x/y.mp4",
            "https://youtube.com/",
            "zz:1",
            "https://vimeo.com/about",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
