//! `${NAME}`, `${NAME:-default}` and `${file:/path}` in config values, with errors naming the key.

use std::collections::BTreeSet;

use super::ConfigError;

/// Replaces every `${NAME}` in `value` with the environment variable `NAME`,
/// `${NAME:-default}` with `default` where `NAME` is unset or empty, and `${file:/path}` with
/// the file's text less one trailing newline (secrets as Kubernetes and Docker mount them).
/// `key` names the config key for the error when a variable is unset or a file unreadable;
/// a file's text is never part of an error.
pub fn expand_env(key: &str, value: &str) -> Result<String, ConfigError> {
    expand_with(key, value, |name| std::env::var(name).ok()).map(|e| e.text)
}

/// A value after expansion, and whether part of it came from a file (so that errors about
/// it must not quote it).
#[derive(Debug)]
pub(crate) struct Expanded {
    pub text: String,
    pub from_file: bool,
}

pub(crate) fn expand_with(
    key: &str,
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Expanded, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut from_file = false;
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end =
            after.find('}').ok_or_else(|| ConfigError::invalid(key, format!("unterminated `${{` in {value:?}")))?;
        let inner = &after[..end];
        rest = &after[end + 1..];
        if let Some(path) = inner.strip_prefix("file:") {
            out.push_str(&read_secret_file(key, path)?);
            from_file = true;
            continue;
        }
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ConfigError::invalid(key, format!("bad environment variable name {name:?}")));
        }
        let val = match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_owned(),
            (None, None) => {
                return Err(ConfigError::invalid(key, format!("environment variable {name} is not set")));
            }
        };
        out.push_str(&val);
    }
    out.push_str(rest);
    Ok(Expanded { text: out, from_file })
}

/// A mounted secret file's text without its one trailing newline (`echo` and most editors
/// add one). The error names the key and the path, never the content.
fn read_secret_file(key: &str, path: &str) -> Result<String, ConfigError> {
    if path.is_empty() {
        return Err(ConfigError::invalid(key, "`${file:}` names no file (write `${file:/run/secrets/name}`)"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read secret file {path}: {e}")))?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    Ok(text.to_owned())
}

/// Expands every string in `value` (tables and arrays too), naming each by its dotted path
/// under `key` (`streams[0].params.shop_no`); paths whose text came from a file are added to
/// `from_files`.
pub fn expand_tree(key: &str, value: &mut toml::Value, from_files: &mut BTreeSet<String>) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) => {
            let e = expand_with(key, s, |name| std::env::var(name).ok())?;
            if e.from_file {
                from_files.insert(key.to_owned());
            }
            *s = e.text;
        }
        toml::Value::Table(t) => {
            for (name, v) in t.iter_mut() {
                expand_tree(&join(key, name), v, from_files)?;
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                expand_tree(&format!("{key}[{i}]"), v, from_files)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `prefix.name`, or `name` at the top.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_owned() } else { format!("{prefix}.{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(key: &str, value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        expand_with(key, value, lookup).map(|e| e.text)
    }

    #[test]
    fn env_references_expand_and_unset_ones_name_the_key() {
        let got = expand("sources.x.appsecret", "a-${ONE}-${TWO}", |n| Some(n.to_lowercase())).unwrap();
        assert_eq!(got, "a-one-two");
        let got = expand("metrics.listen", "${NOPE:-127.0.0.1:9464}", |_| None).unwrap();
        assert_eq!(got, "127.0.0.1:9464");
        let got = expand("metrics.listen", "${SET:-127.0.0.1:9464}", |_| Some("0.0.0.0:1".into())).unwrap();
        assert_eq!(got, "0.0.0.0:1");
        let e = expand("sources.x.appsecret", "${NOPE}", |_| None).unwrap_err().to_string();
        assert!(e.contains("sources.x.appsecret") && e.contains("NOPE"), "{e}");
    }

    #[test]
    fn a_file_reference_reads_the_file_less_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wdt_appsecret");
        for (written, read) in
            [("s3cr3t\n", "s3cr3t"), ("s3cr3t\r\n", "s3cr3t"), ("s3cr3t\n\n", "s3cr3t\n"), ("s3", "s3")]
        {
            std::fs::write(&path, written).unwrap();
            let e = expand_with("sources.w.appsecret", &format!("${{file:{}}}", path.display()), |_| None).unwrap();
            assert_eq!((e.text.as_str(), e.from_file), (read, true), "{written:?}");
        }
        std::fs::write(&path, "pw\n").unwrap();
        let e = expand_with("k", &format!("user:${{file:{}}}@${{HOST}}", path.display()), |_| Some("h".into()));
        assert_eq!(e.unwrap().text, "user:pw@h");
        let plain = expand_with("k", "${HOST}", |_| Some("h".into())).unwrap();
        assert!(!plain.from_file);
    }

    #[test]
    fn an_unreadable_file_names_the_key_and_the_path() {
        let e = expand("sources.w.appsecret", "${file:/nonexistent/wdt_appsecret}", |_| None).unwrap_err().to_string();
        assert!(e.contains("sources.w.appsecret") && e.contains("/nonexistent/wdt_appsecret"), "{e}");
        let e = expand("sources.w.appsecret", "${file:}", |_| None).unwrap_err().to_string();
        assert!(e.contains("sources.w.appsecret") && e.contains("names no file"), "{e}");
    }

    #[test]
    fn a_tree_expands_everywhere_and_names_each_value_by_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "pw\n").unwrap();
        let mut v: toml::Value = toml::from_str(&format!(
            "a = \"${{TIDEMARK_TEST_SURELY_UNSET_VAR:-x}}\"\n[[s]]\np = {{ q = \"${{file:{}}}\" }}\n",
            path.display()
        ))
        .unwrap();
        let mut files = BTreeSet::new();
        expand_tree("", &mut v, &mut files).unwrap();
        assert_eq!((v["a"].as_str(), v["s"][0]["p"]["q"].as_str()), (Some("x"), Some("pw")));
        assert_eq!(files, BTreeSet::from(["s[0].p.q".to_owned()]));
        let mut v: toml::Value = toml::from_str("[[s]]\np = { q = \"${TIDEMARK_TEST_SURELY_UNSET_VAR}\" }\n").unwrap();
        let e = expand_tree("", &mut v, &mut files).unwrap_err().to_string();
        assert!(e.contains("`s[0].p.q`"), "{e}");
    }
}
