//! The module structure docs/architecture.md describes, checked on the source: every import
//! between top-level modules points down the layer order, and no file imports a module that
//! (directly or through others) imports it back. Test code (`#[cfg(test)]` items) may reach up
//! for fixtures and is not counted; neither are the crate root's re-exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, highest layer first: each may import only from those after it.
const LAYERS: [&str; 11] = [
    "cli", "pipeline", "fixtures", "viz", "eval", "train", "embed", "model", "io", "numeric",
    "error",
];

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module a file defines (`src/eval/kinds/mod.rs` → `eval::kinds`).
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut m: Module = rel
        .iter()
        .map(|s| s.to_string_lossy().to_string())
        .collect();
    if m.last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        m.pop();
    }
    m
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path,
    Open,
    Close,
    Comma,
    Other(char),
}

/// Tokens of the code, without comments, string and char literals.
fn tokens(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let (mut i, mut out) = (0, Vec::new());
    while i < c.len() {
        let ch = c[i];
        if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '"' || (ch == 'r' && matches!(c.get(i + 1), Some('"') | Some('#'))) {
            // Plain or raw string: skip to its end.
            let mut hashes = 0;
            if ch == 'r' {
                i += 1;
                while c[i] == '#' {
                    hashes += 1;
                    i += 1;
                }
            }
            i += 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if ch != 'r' && c[i] == '\\' {
                    i += 2;
                    continue;
                }
                if c[i] == '"' && (0..hashes).all(|h| c.get(i + 1 + h) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if ch == '\'' {
            // A char literal ('x', '\n') or a lifetime ('a): skip literals only.
            if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else if c.get(i + 1) == Some(&'\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[s..i].iter().collect()));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(match ch {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ',' => Tok::Comma,
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                c => Tok::Other(c),
            });
            i += 1;
        }
    }
    out
}

/// The tokens without `#[cfg(test)]` items (the item after the attribute: up to its `;`, or
/// through its braces).
fn without_test_items(t: &[Tok]) -> Vec<Tok> {
    let is = |i: usize, want: &[Tok]| t.get(i..i + want.len()) == Some(want);
    let attr = [
        Tok::Other('#'),
        Tok::Other('['),
        Tok::Ident("cfg".into()),
        Tok::Other('('),
        Tok::Ident("test".into()),
        Tok::Other(')'),
        Tok::Other(']'),
    ];
    let (mut out, mut i) = (Vec::new(), 0);
    while i < t.len() {
        if !is(i, &attr) {
            out.push(t[i].clone());
            i += 1;
            continue;
        }
        i += attr.len();
        while i < t.len() && t[i] != Tok::Open && t[i] != Tok::Other(';') {
            i += 1;
        }
        if t.get(i) == Some(&Tok::Open) {
            let mut depth = 0;
            while i < t.len() {
                match t[i] {
                    Tok::Open => depth += 1,
                    Tok::Close => depth -= 1,
                    _ => {}
                }
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every path the tokens name from `at` on (after `prefix`), with `{a, b::c}` groups expanded;
/// returns the paths and the index after them.
fn paths_at(t: &[Tok], mut at: usize, prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = prefix;
    loop {
        match t.get(at) {
            Some(Tok::Open) => {
                at += 1;
                let mut all = Vec::new();
                while at < t.len() && t[at] != Tok::Close {
                    if t[at] == Tok::Comma {
                        at += 1;
                        continue;
                    }
                    let (ps, next) = paths_at(t, at, path.clone());
                    all.extend(ps);
                    at = next.max(at + 1);
                }
                return (all, at + 1);
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                at += 1;
            }
            _ => return (vec![path], at),
        }
        if t.get(at) != Some(&Tok::Path) {
            return (vec![path], at);
        }
        at += 1;
    }
}

/// The modules a file imports: paths from `crate`, `super`, `self` or a child module, resolved
/// to the longest known module.
fn imports(
    me: &Module,
    is_dir_module: bool,
    text: &str,
    known: &BTreeSet<Module>,
) -> BTreeSet<Module> {
    let t = without_test_items(&tokens(text));
    let mut found = BTreeSet::new();
    let mut i = 0;
    while i < t.len() {
        let starts = i == 0 || t[i - 1] != Tok::Path;
        let root = match &t[i] {
            Tok::Ident(s) if starts && s == "crate" => Some(Vec::new()),
            Tok::Ident(s) if starts && s == "super" => {
                Some(me[..me.len().saturating_sub(1)].to_vec())
            }
            Tok::Ident(s) if starts && s == "self" => Some(me.clone()),
            Tok::Ident(s) if starts && is_dir_module && !me.is_empty() => {
                let mut child = me.clone();
                child.push(s.clone());
                known.contains(&child).then(|| me.clone())
            }
            _ => None,
        };
        let Some(root) = root else {
            i += 1;
            continue;
        };
        let skip_root =
            matches!(&t[i], Tok::Ident(s) if s == "crate" || s == "super" || s == "self");
        let start = if skip_root { i + 1 } else { i };
        if skip_root && t.get(start) != Some(&Tok::Path) {
            i += 1;
            continue;
        }
        let (paths, next) = paths_at(&t, if skip_root { start + 1 } else { start }, root);
        for p in paths {
            let target = (1..=p.len())
                .rev()
                .map(|k| p[..k].to_vec())
                .find(|m| known.contains(m));
            if let Some(m) = target {
                if &m != me {
                    found.insert(m);
                }
            }
        }
        i = next.max(i + 1);
    }
    found
}

/// Child modules a file declares under `#[cfg(test)]` (`#[cfg(test)] mod x;`): test code.
fn test_children(me: &Module, text: &str) -> Vec<Module> {
    let t = tokens(text);
    let mut out = Vec::new();
    for (i, w) in t.windows(7).enumerate() {
        let attr = matches!(&w[2], Tok::Ident(s) if s == "cfg")
            && matches!(&w[4], Tok::Ident(s) if s == "test")
            && w[0] == Tok::Other('#');
        if !attr {
            continue;
        }
        // The item after the attribute, up to its `;` or `{`: `... mod NAME ;`.
        let item: Vec<&Tok> = t[i + 7..]
            .iter()
            .take_while(|x| **x != Tok::Other(';') && **x != Tok::Open)
            .collect();
        if let [.., Tok::Ident(m), Tok::Ident(name)] = item.as_slice() {
            if m == "mod" {
                let mut child = me.clone();
                child.push(name.clone());
                out.push(child);
            }
        }
    }
    out
}

/// The import graph of `src/` (file modules, excluding the crate root, the binary and test-only
/// modules).
fn graph() -> BTreeMap<Module, BTreeSet<Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let known: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let test_only: BTreeSet<Module> = files
        .iter()
        .flat_map(|f| test_children(&module_of(&src, f), &std::fs::read_to_string(f).unwrap()))
        .collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let me = module_of(&src, f);
        if me.is_empty() || test_only.contains(&me) {
            continue;
        }
        let name = f.file_name().unwrap().to_string_lossy();
        let dir_module = name == "mod.rs";
        let text = std::fs::read_to_string(f).unwrap();
        g.insert(me.clone(), imports(&me, dir_module, &text, &known));
    }
    g
}

#[test]
fn top_level_imports_point_down_the_layers() {
    let layer = |m: &Module| {
        LAYERS
            .iter()
            .position(|l| m.first().is_some_and(|f| f == l))
    };
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        let Some(lf) = layer(&from) else {
            wrong.push(format!("{} is not in a layer", from.join("::")));
            continue;
        };
        for to in tos {
            match layer(&to) {
                Some(lt) if lt >= lf => {}
                _ => wrong.push(format!("{} imports {}", from.join("::"), to.join("::"))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    // Tarjan's strongly connected components; any of more than one module is a cycle.
    struct State<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on: BTreeSet<&'a Module>,
        cycles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.get(v).into_iter().flatten() {
            let Some((w, _)) = s.g.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.join("::"));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.cycles.push(comp);
            }
        }
    }
    let mut s = State {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    assert!(s.cycles.is_empty(), "import cycles: {:?}", s.cycles);
}

#[test]
fn the_scanner_sees_grouped_relative_and_nested_imports() {
    let known: BTreeSet<Module> = [
        vec!["a"],
        vec!["a", "b"],
        vec!["a", "c"],
        vec!["a", "c", "d"],
        vec!["e"],
    ]
    .into_iter()
    .map(|m| m.into_iter().map(String::from).collect())
    .collect();
    let me: Module = vec!["a".into()];
    let text = r#"
        use crate::e::{X, y::Z};
        use super::super::nothing;
        use self::{b::One, c};
        use c::d::Thing;          // a child module of `a`
        fn f() { let s = "crate::b::Fake"; b::g(); }
        #[cfg(test)]
        mod tests { use crate::a::c::d; }
    "#;
    let got: Vec<String> = imports(&me, true, text, &known)
        .into_iter()
        .map(|m| m.join("::"))
        .collect();
    assert_eq!(got, ["a::b", "a::c", "a::c::d", "e"]);
    let declared = test_children(&me, "#[cfg(test)]\npub(crate) mod testing;\nmod b;");
    assert_eq!(declared, [vec!["a".to_string(), "testing".to_string()]]);
}
