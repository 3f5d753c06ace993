//! The module tree of one crate: which file each module lives in, what each module
//! defines and imports, and which item a path names from inside a module.
//!
//! Test code is left out (`#[cfg(test)]` modules and items): tests may reach anywhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Attribute, Item, ItemMod, Meta, Token, UseTree, Visibility};

pub type ModId = usize;
pub type FileId = usize;

/// How deep a name may be chased through imports: real code needs a few levels; the
/// bound stops import loops (`use a::b` where `a` is itself `b`'s import).
const MAX_DEPTH: usize = 16;

/// A namespace of Rust: a module and a function of one name can live side by side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ns {
    Type,
    Value,
    Macro,
}

/// What a path names inside the crate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Entity {
    Module(ModId),
    Item { file: FileId, name: String, ns: Ns },
}

/// A `use` path or a path in code, as written.
#[derive(Clone, Debug)]
pub struct PathRef {
    /// Starts with `::` (an external crate).
    pub global: bool,
    pub segs: Vec<String>,
}

impl From<&syn::Path> for PathRef {
    fn from(path: &syn::Path) -> PathRef {
        PathRef {
            global: path.leading_colon.is_some(),
            segs: path.segments.iter().map(|s| s.ident.to_string()).collect(),
        }
    }
}

/// One leaf of a `use` tree: `alias` is the name it brings in, `None` for a glob.
#[derive(Clone, Debug)]
pub struct Import {
    pub alias: Option<String>,
    pub path: PathRef,
}

pub struct SourceFile {
    /// Path under the crate's `src/`.
    pub rel: String,
    pub ast: syn::File,
    /// The module the file is.
    pub module: ModId,
}

struct Module {
    parent: Option<ModId>,
    /// The crate root (`lib.rs` or `main.rs`) of the tree the module is in.
    root: ModId,
    children: BTreeMap<String, ModId>,
    defs: BTreeMap<String, Vec<(FileId, Ns)>>,
    imports: Vec<Import>,
}

pub struct Crate {
    pub files: Vec<SourceFile>,
    modules: Vec<Module>,
    /// The library's name as other code spells it (`bmat_wire`): how `main.rs` reaches it.
    lib_name: String,
    lib_root: Option<ModId>,
}

/// A `mod x;` whose file is still to read.
struct Pending {
    module: ModId,
    path: PathBuf,
    /// `mod.rs`-like: its own children live next to it, not in a folder named after it.
    mod_rs: bool,
}

impl Crate {
    /// Reads the module trees of `src/lib.rs` and `src/main.rs`, following `mod` items.
    pub fn load(src: &Path, lib_name: &str) -> Result<Crate> {
        let mut krate = Crate {
            files: Vec::new(),
            modules: Vec::new(),
            lib_name: lib_name.to_owned(),
            lib_root: None,
        };
        let mut pending = Vec::new();
        for root in ["lib.rs", "main.rs"] {
            let path = src.join(root);
            if path.is_file() {
                let module = krate.add_module(None);
                if root == "lib.rs" {
                    krate.lib_root = Some(module);
                }
                pending.push(Pending {
                    module,
                    path,
                    mod_rs: true,
                });
            }
        }
        if pending.is_empty() {
            bail!("{} holds neither lib.rs nor main.rs", src.display());
        }
        while let Some(next) = pending.pop() {
            pending.extend(krate.read_file(src, next)?);
        }
        Ok(krate)
    }

    fn add_module(&mut self, parent: Option<ModId>) -> ModId {
        let id = self.modules.len();
        let root = parent.map_or(id, |p| self.modules[p].root);
        self.modules.push(Module {
            parent,
            root,
            children: BTreeMap::new(),
            defs: BTreeMap::new(),
            imports: Vec::new(),
        });
        id
    }

    fn read_file(&mut self, src: &Path, at: Pending) -> Result<Vec<Pending>> {
        let text = std::fs::read_to_string(&at.path)
            .with_context(|| format!("cannot read {}", at.path.display()))?;
        let ast = syn::parse_file(&text)
            .with_context(|| format!("cannot parse {}", at.path.display()))?;
        if is_test_only(&ast.attrs) {
            return Ok(Vec::new());
        }
        let file_dir = at.path.parent().unwrap_or(src).to_path_buf();
        let dir = match (at.mod_rs, at.path.file_stem()) {
            (false, Some(stem)) => file_dir.join(stem),
            _ => file_dir.clone(),
        };
        let file = self.files.len();
        let mut defs = Definitions {
            krate: self,
            file,
            module: at.module,
            file_dir,
            dir,
            inline_depth: 0,
            pending: Vec::new(),
            missing: None,
        };
        defs.visit_file(&ast);
        let (pending, missing) = (defs.pending, defs.missing);
        if let Some(missing) = missing {
            bail!(
                "{}: cannot find the file of `mod {missing};`",
                at.path.display()
            );
        }
        let rel = at.path.strip_prefix(src).unwrap_or(&at.path);
        self.files.push(SourceFile {
            rel: rel.to_string_lossy().into_owned(),
            ast,
            module: at.module,
        });
        Ok(pending)
    }

    /// The inline or file module `name` declared in `module`.
    pub fn child(&self, module: ModId, name: &str) -> Option<ModId> {
        self.modules[module].children.get(name).copied()
    }

    /// What `path` names when written in `from` (a `use` path or a path in code; both
    /// resolve alike since Rust 2018). Several entities when the name lives in several
    /// namespaces; none when it is outside the crate (std, a dependency, a local).
    pub fn resolve(&self, from: ModId, path: &PathRef) -> Vec<Entity> {
        self.resolve_at(from, path, 0)
    }

    fn resolve_at(&self, from: ModId, path: &PathRef, depth: usize) -> Vec<Entity> {
        let Some((first, rest)) = path.segs.split_first() else {
            return Vec::new();
        };
        if depth > MAX_DEPTH {
            return Vec::new();
        }
        let mut found = if path.global {
            self.extern_crate(from, first)
        } else {
            match first.as_str() {
                "crate" => vec![Entity::Module(self.modules[from].root)],
                "self" => vec![Entity::Module(from)],
                "super" => self.parent(from),
                // The type an impl is for: the same file, or one a path elsewhere names.
                "Self" => Vec::new(),
                name => {
                    let found = self.lookup(from, name, depth + 1);
                    if found.is_empty() {
                        self.extern_crate(from, name)
                    } else {
                        found
                    }
                }
            }
        };
        for seg in rest {
            let modules: Vec<ModId> = found
                .iter()
                .filter_map(|e| match e {
                    Entity::Module(m) => Some(*m),
                    Entity::Item { .. } => None,
                })
                .collect();
            if modules.is_empty() {
                // The rest names a variant or an associated item of this type.
                found.retain(|e| matches!(e, Entity::Item { ns: Ns::Type, .. }));
                return found;
            }
            found = modules
                .into_iter()
                .flat_map(|m| match seg.as_str() {
                    "super" => self.parent(m),
                    "self" => vec![Entity::Module(m)],
                    _ => self.lookup(m, seg, depth + 1),
                })
                .collect();
        }
        found.sort();
        found.dedup();
        found
    }

    fn parent(&self, module: ModId) -> Vec<Entity> {
        self.modules[module]
            .parent
            .map(Entity::Module)
            .into_iter()
            .collect()
    }

    /// `name` as an external crate: only the library, seen from the binary, is ours.
    fn extern_crate(&self, from: ModId, name: &str) -> Vec<Entity> {
        match self.lib_root {
            Some(lib) if name == self.lib_name && self.modules[from].root != lib => {
                vec![Entity::Module(lib)]
            }
            _ => Vec::new(),
        }
    }

    /// `name` inside `module`: a child module, a definition, an import (followed to what
    /// it imports: a re-export is not where an item lives), else what a glob brings in.
    fn lookup(&self, module: ModId, name: &str, depth: usize) -> Vec<Entity> {
        let m = &self.modules[module];
        let mut found: Vec<Entity> = m
            .children
            .get(name)
            .map(|&c| Entity::Module(c))
            .into_iter()
            .collect();
        for &(file, ns) in m.defs.get(name).into_iter().flatten() {
            found.push(Entity::Item {
                file,
                name: name.to_owned(),
                ns,
            });
        }
        for import in m
            .imports
            .iter()
            .filter(|i| i.alias.as_deref() == Some(name))
        {
            found.extend(self.resolve_at(module, &import.path, depth));
        }
        if found.is_empty() {
            for glob in m.imports.iter().filter(|i| i.alias.is_none()) {
                for target in self.resolve_at(module, &glob.path, depth) {
                    if let Entity::Module(target) = target {
                        found.extend(self.lookup(target, name, depth + 1));
                    }
                }
            }
        }
        found
    }
}

/// Records the modules, definitions and imports of one file.
struct Definitions<'a> {
    krate: &'a mut Crate,
    file: FileId,
    module: ModId,
    /// The folder of the file: where `#[path]` points from.
    file_dir: PathBuf,
    /// The folder of the current module: where its `mod x;` files live.
    dir: PathBuf,
    inline_depth: usize,
    pending: Vec<Pending>,
    missing: Option<String>,
}

impl Definitions<'_> {
    fn define(&mut self, module: ModId, name: String, ns: Ns) {
        if name != "_" {
            let defs = self.krate.modules[module].defs.entry(name).or_default();
            defs.push((self.file, ns));
        }
    }

    fn declare_module(&mut self, item: &ItemMod) {
        let name = item.ident.to_string();
        let child = self.krate.add_module(Some(self.module));
        self.krate.modules[self.module]
            .children
            .insert(name.clone(), child);
        if let Some((_, items)) = &item.content {
            let (module, dir) = (self.module, self.dir.clone());
            self.module = child;
            self.dir = self.dir.join(&name);
            self.inline_depth += 1;
            for item in items {
                self.visit_item(item);
            }
            self.inline_depth -= 1;
            (self.module, self.dir) = (module, dir);
            return;
        }
        let explicit = path_attr(&item.attrs).map(|p| {
            let base = if self.inline_depth == 0 {
                &self.file_dir
            } else {
                &self.dir
            };
            base.join(p)
        });
        let candidates = match explicit {
            Some(path) => vec![(path, true)],
            None => vec![
                (self.dir.join(format!("{name}.rs")), false),
                (self.dir.join(&name).join("mod.rs"), true),
            ],
        };
        match candidates.into_iter().find(|(path, _)| path.is_file()) {
            Some((path, mod_rs)) => self.pending.push(Pending {
                module: child,
                path,
                mod_rs,
            }),
            None => self.missing = Some(name),
        }
    }
}

impl<'ast> Visit<'ast> for Definitions<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        let module = self.module;
        match item {
            Item::Mod(m) => return self.declare_module(m),
            Item::Use(u) => {
                let imports = &mut self.krate.modules[module].imports;
                imports.extend(flatten_use(u));
                return;
            }
            Item::Struct(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::Enum(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::Union(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::Trait(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::TraitAlias(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::Type(i) => self.define(module, i.ident.to_string(), Ns::Type),
            Item::Fn(i) => self.define(module, i.sig.ident.to_string(), Ns::Value),
            Item::Const(i) => self.define(module, i.ident.to_string(), Ns::Value),
            Item::Static(i) => self.define(module, i.ident.to_string(), Ns::Value),
            Item::Macro(m) => {
                if let Some(ident) = &m.ident {
                    self.define(module, ident.to_string(), Ns::Macro);
                    if m.attrs.iter().any(|a| a.path().is_ident("macro_export")) {
                        let root = self.krate.modules[module].root;
                        self.define(root, ident.to_string(), Ns::Macro);
                    }
                }
            }
            Item::ForeignMod(f) => {
                for foreign in &f.items {
                    match foreign {
                        syn::ForeignItem::Fn(i) => {
                            self.define(module, i.sig.ident.to_string(), Ns::Value)
                        }
                        syn::ForeignItem::Static(i) => {
                            self.define(module, i.ident.to_string(), Ns::Value)
                        }
                        syn::ForeignItem::Type(i) => {
                            self.define(module, i.ident.to_string(), Ns::Type)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        // Items and imports inside function bodies count as their module's: their paths
        // resolve alike, and they are seen by nothing else.
        syn::visit::visit_item(self, item);
    }
}

/// The leaves of a `use` item, each with its full path.
pub fn flatten_use(item: &syn::ItemUse) -> Vec<Import> {
    fn walk(tree: &UseTree, prefix: &mut Vec<String>, global: bool, out: &mut Vec<Import>) {
        let mut leaf = |alias: Option<String>, last: Option<String>| {
            let mut segs = prefix.clone();
            segs.extend(last);
            out.push(Import {
                alias,
                path: PathRef { global, segs },
            });
        };
        match tree {
            UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, global, out);
                prefix.pop();
            }
            UseTree::Name(n) if n.ident == "self" => leaf(prefix.last().cloned(), None),
            UseTree::Name(n) => leaf(Some(n.ident.to_string()), Some(n.ident.to_string())),
            UseTree::Rename(r) if r.ident == "self" => leaf(Some(r.rename.to_string()), None),
            UseTree::Rename(r) => leaf(Some(r.rename.to_string()), Some(r.ident.to_string())),
            UseTree::Glob(_) => leaf(None, None),
            UseTree::Group(g) => {
                for tree in &g.items {
                    walk(tree, prefix, global, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &item.tree,
        &mut Vec::new(),
        item.leading_colon.is_some(),
        &mut out,
    );
    out
}

/// A `use` only the module's own code reads (not a re-export).
pub fn is_private(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Inherited)
}

/// The item exists only under `cfg(test)`: `#[cfg(test)]` or `#[cfg(all(test, …))]`.
pub fn is_test_only(attrs: &[Attribute]) -> bool {
    fn needs_test(meta: &Meta) -> bool {
        match meta {
            Meta::Path(p) => p.is_ident("test"),
            Meta::List(l) if l.path.is_ident("all") => l
                .parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated)
                .is_ok_and(|all| all.iter().any(needs_test)),
            _ => false,
        }
    }
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<Meta>().is_ok_and(|m| needs_test(&m)))
}

pub fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn path_attr(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}
