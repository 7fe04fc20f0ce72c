//! Config errors that never echo a secret: TOML syntax errors shown by line and key only, and
//! quoted values cut from messages about secret keys.

/// Whether a config key (or a line of config) names a secret: vendor secrets and sessions,
/// passwords, tokens, private keys.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "session", "token", "credential", "key.pem", "private", "oauthbearer"]
        .iter()
        .any(|w| k.contains(w))
}

/// A TOML error as `line L, column C: message`, then the offending line with its value left
/// out (`key = …`; table headers whole): no value is ever echoed, so a typo on a secret's line
/// cannot print the secret. On lines that mention a secret, or inside a multi-line string,
/// quoted values are also cut from the message.
pub fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().to_owned();
    let Some(span) = e.span() else { return redact_quoted(&message) };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = &text[line_start..line_end];
    let in_multiline = inside_multiline_string(text, line_start);
    let excerpt = if in_multiline {
        None
    } else if line.trim_start().starts_with('[') {
        Some(line.trim().to_owned())
    } else {
        line.split_once('=').map(|(k, _)| format!("{} = …", k.trim()))
    };
    let message = if in_multiline || is_secret_key(line) { redact_quoted(&message) } else { message };
    match excerpt {
        Some(x) => format!("line {line_no}, column {column}: {message}\n  {line_no} | {x}"),
        None => format!("line {line_no}, column {column}: {message} (inside a multi-line value, not shown)"),
    }
}

/// Whether byte offset `at` of TOML `text` lies inside a multi-line string (`"""` or `'''`).
fn inside_multiline_string(text: &str, at: usize) -> bool {
    #[derive(PartialEq)]
    enum In {
        Code,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let b = &text.as_bytes()[..at.min(text.len())];
    let mut state = In::Code;
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        match state {
            In::Code if rest.starts_with(b"\"\"\"") => (state, i) = (In::MultiBasic, i + 2),
            In::Code if rest.starts_with(b"'''") => (state, i) = (In::MultiLiteral, i + 2),
            In::Code => match b[i] {
                b'"' => state = In::Basic,
                b'\'' => state = In::Literal,
                b'#' => state = In::Comment,
                _ => {}
            },
            In::Comment | In::Literal if b[i] == b'\n' => state = In::Code,
            In::Literal if b[i] == b'\'' => state = In::Code,
            In::Basic if b[i] == b'\\' => i += 1,
            In::Basic if b[i] == b'"' || b[i] == b'\n' => state = In::Code,
            In::MultiBasic if b[i] == b'\\' => i += 1,
            In::MultiBasic if rest.starts_with(b"\"\"\"") => (state, i) = (In::Code, i + 2),
            In::MultiLiteral if rest.starts_with(b"'''") => (state, i) = (In::Code, i + 2),
            _ => {}
        }
        i += 1;
    }
    matches!(state, In::MultiBasic | In::MultiLiteral)
}

/// Cuts quoted or backticked values out of an error message.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push_str("***");
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        out.push_str("***");
    }
    out
}
