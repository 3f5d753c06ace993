//! `cargo xtask layout`: proves that no crate of the workspace has an import cycle,
//! between its files or between its top-level modules (the first segment under `src/`:
//! a folder or a file), so that no module reaches up to one of its callers.
//!
//! A file uses another when it names an item the other defines; names are resolved
//! through imports and re-exports to the defining file (see `uses`). Test code is left
//! out. Trait methods called through a glob-imported trait are not seen.

mod tree;
mod uses;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A cycle in one crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The crate's folder in the workspace (`bmat`, `wire`).
    pub krate: String,
    pub level: Level,
    /// Every file (`archive/unpack.rs`) or top-level module (`archive`) of the cycle,
    /// sorted: a strongly connected component of the graph of uses.
    pub members: Vec<String>,
    /// A closed walk through all of `members`, from the first back to it.
    pub walk: Vec<Edge>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    File,
    Module,
}

/// `from` uses `to`; `example` is one use that makes it so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub example: Example,
}

/// `user` names `item`, defined in `owner` (files under `src/`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    pub item: String,
    pub user: String,
    pub owner: String,
}

/// The findings with what was looked at.
#[derive(Clone, Debug)]
pub struct Survey {
    pub crates: usize,
    pub files: usize,
    pub findings: Vec<Finding>,
}

/// The import cycles of every crate of the workspace at `root`.
pub fn check(root: &Path) -> Result<Vec<Finding>> {
    Ok(survey(root)?.findings)
}

pub fn survey(root: &Path) -> Result<Survey> {
    #[derive(Deserialize)]
    struct Root {
        workspace: Workspace,
    }
    #[derive(Deserialize)]
    struct Workspace {
        members: Vec<String>,
    }
    let members = read_toml::<Root>(&root.join("Cargo.toml"))?
        .workspace
        .members;
    let mut survey = Survey {
        crates: members.len(),
        files: 0,
        findings: Vec::new(),
    };
    for member in members {
        let dir = root.join(&member);
        let krate = tree::Crate::load(&dir.join("src"), &lib_name(&dir)?)
            .with_context(|| format!("crate {member}"))?;
        survey.files += krate.files.len();
        let (files, modules) = graphs(&krate);
        for (level, graph) in [(Level::File, files), (Level::Module, modules)] {
            survey
                .findings
                .extend(cycles(&graph).into_iter().map(|(members, walk)| Finding {
                    krate: member.clone(),
                    level,
                    members,
                    walk,
                }));
        }
    }
    Ok(survey)
}

/// The crate's uses between files, and between top-level modules.
fn graphs(krate: &tree::Crate) -> (Graph, Graph) {
    let mut files = Graph::new();
    let mut modules = Graph::new();
    for u in uses::collect(krate) {
        let example = Example {
            item: u.item,
            user: krate.files[u.user].rel.clone(),
            owner: krate.files[u.owner].rel.clone(),
        };
        let (from, to) = (top_module(&example.user), top_module(&example.owner));
        if from != to {
            add_edge(&mut modules, from, to, example.clone());
        }
        let (from, to) = (example.user.clone(), example.owner.clone());
        add_edge(&mut files, from, to, example);
    }
    (files, modules)
}

/// How the crate's code names its library: `[lib] name`, else the package's name.
fn lib_name(dir: &Path) -> Result<String> {
    #[derive(Deserialize)]
    struct Manifest {
        package: Package,
        lib: Option<Lib>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    #[derive(Deserialize)]
    struct Lib {
        name: Option<String>,
    }
    let manifest: Manifest = read_toml(&dir.join("Cargo.toml"))?;
    let name = manifest
        .lib
        .and_then(|l| l.name)
        .unwrap_or(manifest.package.name);
    Ok(name.replace('-', "_"))
}

fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))
}

/// `archive/unpack.rs` → `archive`, `outcome.rs` → `outcome`, `lib.rs` → `lib`.
fn top_module(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

/// Node → node it uses → the smallest example of that use.
type Graph = BTreeMap<String, BTreeMap<String, Example>>;

fn add_edge(graph: &mut Graph, from: String, to: String, example: Example) {
    graph.entry(to.clone()).or_default();
    let edges = graph.entry(from).or_default();
    match edges.get(&to) {
        Some(known) if *known <= example => {}
        _ => {
            edges.insert(to, example);
        }
    }
}

/// Each strongly connected component of more than one node, with a walk through it.
fn cycles(graph: &Graph) -> Vec<(Vec<String>, Vec<Edge>)> {
    components(graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let walk = closed_walk(graph, &c);
            (c.into_iter().collect(), walk)
        })
        .collect()
}

/// Tarjan's strongly connected components.
fn components(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph[node].keys() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.insert(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                self.out.push(component);
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node.as_str()) {
            tarjan.visit(node);
        }
    }
    let mut out = tarjan.out;
    out.sort();
    out
}

/// From the component's first node, the shortest way to the nearest node not yet
/// walked through, again until none is left, then back.
fn closed_walk(graph: &Graph, component: &BTreeSet<String>) -> Vec<Edge> {
    let Some(start) = component.first() else {
        return Vec::new();
    };
    let mut left: BTreeSet<&String> = component.iter().filter(|n| *n != start).collect();
    let mut walk = Vec::new();
    let mut at = start;
    loop {
        let done = left.is_empty();
        let path = shortest_path(graph, component, at, |n| {
            if done { n == start } else { left.contains(n) }
        });
        let Some(last) = path.last() else {
            return walk;
        };
        at = component.get(&last.to).unwrap_or(start);
        for edge in &path {
            left.remove(&edge.to);
        }
        walk.extend(path);
        if done {
            return walk;
        }
    }
}

/// The fewest edges inside `component` from `from` to a node `goal` accepts.
fn shortest_path(
    graph: &Graph,
    component: &BTreeSet<String>,
    from: &String,
    goal: impl Fn(&String) -> bool,
) -> Vec<Edge> {
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        for next in graph[node].keys().filter(|n| component.contains(*n)) {
            if next == from || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, node);
            if goal(next) {
                let mut path = Vec::new();
                let mut to = next;
                while let Some(&prev) = came_from.get(to) {
                    path.push(Edge {
                        from: prev.clone(),
                        to: to.clone(),
                        example: graph[prev][to].clone(),
                    });
                    to = prev;
                }
                path.reverse();
                return path;
            }
            queue.push_back(next);
        }
    }
    Vec::new()
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.level {
            Level::File => "cycle",
            Level::Module => "module cycle",
        };
        let first = self.members.first().map_or("", String::as_str);
        write!(f, "{}: {kind} {first}", self.krate)?;
        for edge in &self.walk {
            let e = &edge.example;
            match self.level {
                Level::File => write!(f, " -> {} ({})", edge.to, e.item)?,
                Level::Module => {
                    write!(f, " -> {} ({}: {} -> {})", edge.to, e.item, e.user, e.owner)?
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Survey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |level| self.findings.iter().filter(|x| x.level == level).count();
        write!(
            f,
            "layout: {} crates, {} files, {} file cycles, {} module cycles",
            self.crates,
            self.files,
            count(Level::File),
            count(Level::Module)
        )
    }
}
