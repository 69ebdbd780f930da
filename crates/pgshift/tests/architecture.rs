//! The library's modules import one another without a cycle (a folder counts as one
//! module): read from the `crate::<module>` paths each source file names, comments aside.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// module -> the modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        if file_name == "lib.rs" {
            continue;
        }
        let module = file_name.trim_end_matches(".rs").to_owned();
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        let mut deps = BTreeSet::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for piece in code.split("crate::").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        deps.insert(name);
                    }
                }
            }
        }
        edges.insert(module, deps);
    }
    edges
}

fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        path: &mut Vec<String>,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        path.push(node.to_owned());
        for dep in edges.get(node).into_iter().flatten() {
            if !edges.contains_key(dep) || done.contains(dep) {
                continue;
            }
            if let Some(i) = path.iter().position(|p| p == dep) {
                let mut cycle = path[i..].to_vec();
                cycle.push(dep.clone());
                found.push(cycle);
            } else {
                visit(dep, path, edges, done, found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = Vec::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if !done.contains(node) {
            visit(node, &mut Vec::new(), edges, &mut done, &mut found);
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = imports();
    assert!(edges.len() > 15, "the modules were not found: {edges:?}");
    let found = cycles(&edges);
    assert!(
        found.is_empty(),
        "import cycles: {}",
        found
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut edges = BTreeMap::new();
    edges.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    edges.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    edges.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    edges.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(cycles(&edges), vec![vec!["a", "b", "c", "a"]]);
}

/// The execution layer (commands, phases, checks, the backfill engine, the executor, the
/// state schema, the session) is read in order by whoever carries it on: no file of it
/// over 600 lines.
#[test]
fn no_file_of_the_execution_layer_is_over_600_lines() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for folder in ["commands", "phases", "checks", "backfill", "exec", "state"] {
        rust_files(&src.join(folder), &mut files);
    }
    for file in ["session.rs", "copy.rs", "lock.rs", "event.rs"] {
        files.push(src.join(file));
    }
    assert!(
        files.len() > 25,
        "the execution layer was not found: {files:?}"
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 600).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 600 lines: {}", long.join(", "));
}
