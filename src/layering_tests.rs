//! Checks that no modules import each other in a cycle: neither the top-level modules nor the
//! modules of any folder (each `mod.rs`'s children, a folder's own `mod.rs` apart), counting
//! every `crate::`, `super::` and `self::` path outside test code, through `pub use`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// A cycle among the child modules of `folder` (empty: the crate root).
#[derive(Debug)]
struct Cycle {
    folder: Module,
    path: Vec<String>,
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let folder = if self.folder.is_empty() { "crate".to_owned() } else { self.folder.join("::") };
        write!(f, "in {folder}: {}", self.path.join(" -> "))
    }
}

/// Every library source file under `src` by module path (`lib.rs` is the root; `main.rs` is
/// another crate): whether it is a folder's (`lib.rs`, `mod.rs`), and its code.
fn modules(src: &Path) -> BTreeMap<Module, (bool, String)> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, (bool, String)>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 name").to_owned();
            let mut module = prefix.to_vec();
            if path.is_dir() {
                module.push(name);
                walk(&path, &module, out);
                continue;
            }
            let Some(stem) = name.strip_suffix(".rs") else { continue };
            match stem {
                "main" if prefix.is_empty() => continue,
                "lib" if prefix.is_empty() => {}
                "mod" => {}
                _ => module.push(stem.to_owned()),
            }
            let folder = matches!(stem, "lib" | "mod");
            out.insert(module, (folder, std::fs::read_to_string(&path).expect("read source")));
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The code's tokens: identifiers, `::`, string literals (as `"` and their text, unescaped),
/// and single punctuation characters; comments and character literals left out (lifetimes
/// kept as identifiers).
fn tokens(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((quote, raw)) = string_start(&c, i) {
            let end = string_end(&c, quote, raw);
            let text: String = c[quote + 1..end.saturating_sub(1 + raw.unwrap_or(0)).max(quote + 1)].iter().collect();
            out.push(format!("\"{text}"));
            i = end;
        } else if ch == '\'' {
            // A character literal ('x', '\n', '\u{7f}'), else a lifetime.
            match (next, c.get(i + 2)) {
                (Some('\\'), _) => {
                    i += 2;
                    while i < c.len() && c[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                (Some(_), Some('\'')) => i += 3,
                _ => i += 1,
            }
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if ch == ':' && next == Some(':') {
            out.push("::".to_owned());
            i += 2;
        } else {
            out.push(ch.to_string());
            i += 1;
        }
    }
    out
}

/// If a string literal (`"…"`, `b"…"`, `r#"…"#`, `br"…"`) starts at `i`: its opening quote,
/// and how many `#` close it if it is raw.
fn string_start(c: &[char], i: usize) -> Option<(usize, Option<usize>)> {
    if c[i] == '"' {
        return Some((i, None));
    }
    // A prefix, not the end of an identifier.
    if !matches!(c[i], 'b' | 'r') || (i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_')) {
        return None;
    }
    let mut j = i;
    if c[j] == 'b' {
        j += 1;
        if c.get(j) == Some(&'"') {
            return Some((j, None));
        }
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some((j + hashes, Some(hashes)))
}

/// Just past the string literal whose opening quote is at `quote`.
fn string_end(c: &[char], quote: usize, raw: Option<usize>) -> usize {
    let mut j = quote + 1;
    while j < c.len() {
        match raw {
            None if c[j] == '\\' => j += 1,
            None if c[j] == '"' => return j + 1,
            Some(hashes) if c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes => {
                return j + 1 + hashes;
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// What one file says: the absolute paths it uses, the names its `pub use` re-exports, and
/// the modules it declares for tests only (`#[cfg(test)] mod x;`, maybe with a `#[path]`).
#[derive(Default)]
struct Said {
    uses: Vec<Module>,
    reexports: BTreeMap<String, Module>,
    test_only: Vec<Module>,
}

/// Reads `module`'s tokens: `use` trees (expanded) and paths starting at `crate`, `super` or
/// `self`, made absolute; items under `#[cfg(test)]` are skipped. `known` tells a `use` of a
/// child module (`use plan::StreamPlan`) from one of another crate.
fn read(module: &Module, is_folder: bool, tokens: &[String], known: &BTreeSet<Module>) -> Said {
    let mut said = Said::default();
    // Inline modules around the current token: (name, depth of its braces).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        if t == "#" && tokens[i + 1..].starts_with(&["[", "cfg", "(", "test", ")", "]"].map(String::from)) {
            let end = skip_item(tokens, i + 7);
            let item = &tokens[i + 7..end];
            if inline.is_empty()
                && let [.., m, name, semicolon] = item
                && m == "mod"
                && semicolon == ";"
            {
                // A `#[path]` names a file beside this one's; else the module is a child.
                let file = item.windows(3).find(|w| w[0] == "path" && w[1] == "=").map(|w| &w[2][1..]);
                let mut declared = if is_folder { module.clone() } else { module[..module.len() - 1].to_vec() };
                match file.and_then(|f| f.strip_suffix(".rs")) {
                    Some(stem) => declared.push(stem.to_owned()),
                    None => {
                        declared = module.clone();
                        declared.push(name.clone());
                    }
                }
                said.test_only.push(declared);
            }
            i = end;
            continue;
        }
        match t {
            "{" | "(" | "[" => depth += 1,
            "}" | ")" | "]" => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            "mod" if tokens.get(i + 2).is_some_and(|b| b == "{") => {
                inline.push((tokens[i + 1].clone(), depth));
                depth += 1;
                i += 3;
                continue;
            }
            _ => {}
        }
        let is_use = t == "use";
        let starts_path = matches!(t, "crate" | "super" | "self")
            && tokens.get(i + 1).is_some_and(|s| s == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if !is_use && !starts_path {
            i += 1;
            continue;
        }
        let here: Module = module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect();
        let public = is_use && (tokens[..i].ends_with(&["pub".to_owned()]) || tokens[..i].ends_with(&[")".to_owned()]));
        let mut trees = Vec::new();
        i = use_tree(tokens, if is_use { i + 1 } else { i }, Vec::new(), &mut trees);
        for (path, alias) in trees {
            let Some(first) = path.first() else { continue };
            let relative = !matches!(first.as_str(), "crate" | "super" | "self");
            let child = here.iter().chain([first]).cloned().collect::<Module>();
            if relative && !known.contains(&child) {
                continue; // another crate's
            }
            let Some(absolute) = absolute(&here, &path) else { continue };
            if public && let Some(name) = alias.or_else(|| absolute.last().cloned()) {
                said.reexports.insert(name, absolute.clone());
            }
            said.uses.push(absolute);
        }
    }
    said
}

/// Past the item starting at `i`: its `;`, or its first balanced `{…}`.
fn skip_item(tokens: &[String], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i].as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            ";" if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// Parses the path (or `use` tree) at `i` after `prefix`; pushes each full path with its
/// alias. Returns the index past it.
fn use_tree(
    tokens: &[String],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    loop {
        let t = tokens.get(i).map(String::as_str).unwrap_or("");
        if t == "{" {
            i += 1;
            while tokens.get(i).is_some_and(|t| t != "}") {
                if tokens[i] == "," {
                    i += 1;
                    continue;
                }
                i = use_tree(tokens, i, prefix.clone(), out);
            }
            return i + 1;
        }
        if t == "*" {
            out.push((prefix, None));
            return i + 1;
        }
        if !t.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            out.push((prefix, None));
            return i;
        }
        prefix.push(t.to_owned());
        i += 1;
        if tokens.get(i).is_some_and(|s| s == "::") {
            i += 1;
            continue;
        }
        let alias = (tokens.get(i).is_some_and(|s| s == "as")).then(|| tokens[i + 1].clone());
        if alias.is_some() {
            i += 2;
        }
        out.push((prefix, alias));
        return i;
    }
}

/// `path` as seen from module `here`, from the crate root; `None` if it climbs past it.
fn absolute(here: &Module, path: &[String]) -> Option<Module> {
    let mut out = here.clone();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            out.clear();
            rest = &path[1..];
        }
        _ => {
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "self" => {}
                    "super" => {
                        out.pop()?;
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
    }
    out.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(out)
}

/// The file module that defines what `path` names, following re-exports.
fn resolve(path: &[String], said: &BTreeMap<Module, Said>, hops: usize) -> Module {
    let known = (0..=path.len()).rev().find(|n| said.contains_key(&path[..*n])).unwrap_or(0);
    let module = path[..known].to_vec();
    if known < path.len()
        && hops < 8
        && let Some(target) = said[&module].reexports.get(&path[known])
        && target.as_slice() != path
    {
        let mut followed = target.clone();
        followed.extend(path[known + 1..].iter().cloned());
        return resolve(&followed, said, hops + 1);
    }
    module
}

/// Every cycle among the children of a module, one per folder where there is one.
fn cycles(src: &Path) -> Vec<Cycle> {
    let sources = modules(src);
    let known: BTreeSet<Module> = sources.keys().cloned().collect();
    let mut said: BTreeMap<Module, Said> =
        sources.iter().map(|(m, (folder, code))| (m.clone(), read(m, *folder, &tokens(code), &known))).collect();
    // Test code is not part of the layering.
    let test_only: Vec<Module> = said.values().flat_map(|s| s.test_only.clone()).collect();
    said.retain(|m, _| !test_only.iter().any(|t| m.starts_with(t)));
    // Per folder, its children and the edges between them.
    let mut graphs: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for m in said.keys().filter(|m| !m.is_empty()) {
        graphs.entry(m[..m.len() - 1].to_vec()).or_default().entry(m[m.len() - 1].clone()).or_default();
    }
    for (from, s) in &said {
        for used in &s.uses {
            let to = resolve(used, &said, 0);
            // The innermost folder holding both, and the child of it each is in.
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                let graph = graphs.get_mut(&from[..common]).expect("a folder");
                let (a, b) = (section_or_child(from, common), section_or_child(&to, common));
                graph.entry(b.clone()).or_default();
                graph.entry(a).or_default().insert(b);
            }
        }
    }
    let mut found = Vec::new();
    for (folder, graph) in graphs {
        if let Some(path) = first_cycle(&graph) {
            found.push(Cycle { folder, path });
        }
    }
    found
}

/// The child of the folder `m[..at]` that `m` is in, but a module's config section
/// (`cluster::config`) is a node of its own: a leaf that imports only the config vocabulary,
/// which `config` gathers while the module itself reads the assembled `Config`.
fn section_or_child(m: &Module, at: usize) -> String {
    if m.len() > at + 1 && m[at + 1] == "config" { format!("{}::config", m[at]) } else { m[at].clone() }
}

/// A cycle of `graph`, as the path that closes it, if there is one.
fn first_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            return Some(stack[at..].iter().chain([&node]).map(|s| s.to_string()).collect());
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// The source folders of the binary's crate and of every crate of the workspace: the crate
/// boundaries keep the layers apart, this check the modules inside each crate.
fn sources() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = vec![root.join("src")];
    for c in std::fs::read_dir(root.join("crates")).expect("read crates") {
        all.push(c.expect("a crate").path().join("src"));
    }
    all
}

#[test]
fn no_folder_has_modules_that_import_each_other_in_a_cycle() {
    let found: Vec<String> =
        sources().iter().flat_map(|s| cycles(s)).filter(|c| !c.folder.is_empty()).map(|c| c.to_string()).collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_top_level_modules_import_each_other_in_no_cycle() {
    let found: Vec<String> =
        sources().iter().flat_map(|s| cycles(s)).filter(|c| c.folder.is_empty()).map(|c| c.to_string()).collect();
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_a_cycle_through_a_reexport_and_a_use_group() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, code: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, code).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write("a/mod.rs", "pub mod x;\npub mod y;\npub mod z;\npub use y::Thing;\n");
    // x -> y through the re-export, y -> z in a use group, z -> x by its full path. Comments,
    // strings and test code do not count.
    write(
        "a/x.rs",
        "use super::Thing;\n// use super::z;\nconst S: &str = r#\"super::z\"#;\nfn g() { crate::b::f() }\n",
    );
    write("a/y.rs", "use super::{z::{self, Other as O}};\npub struct Thing;\n");
    write("a/z.rs", "pub struct Other;\nfn f() { crate::a::x::g() }\n#[cfg(test)]\nmod tests { use crate::b; }\n");
    // Test-only modules do not count, however declared: b's tests use a, which uses b.
    write("b/mod.rs", "pub fn f() {}\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\n#[path = \"more.rs\"]\nmod more;\n");
    write("b/tests.rs", "use crate::a::x;\n");
    write("b/more.rs", "use crate::a::y;\n");
    let found: Vec<String> = cycles(dir.path()).iter().map(Cycle::to_string).collect();
    assert_eq!(found, ["in a: x -> y -> z -> x"]);
    // Without the last edge there is none; a child using its folder's mod.rs is no cycle.
    write("a/mod.rs", "pub mod x;\npub mod y;\npub mod z;\npub use y::Thing;\npub fn helper() {}\n");
    write("a/z.rs", "pub struct Other;\nfn f() { super::helper() }\n");
    assert!(cycles(dir.path()).is_empty());
}
