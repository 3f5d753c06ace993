//! Which file uses which: every item a file names (in a private `use`, in a path in
//! code or types, in a macro's tokens), resolved to the file that defines it.
//!
//! A re-export (`pub use`, `pub(crate) use`) is not a use: it only passes a name on,
//! and the files that name the item through it use the defining file. An import of a
//! module is not a use either: its items, named through it, are.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::Visit;
use syn::{ImplItemFn, Item, TraitItemFn};

use super::tree::{
    Crate, Entity, FileId, ModId, PathRef, flatten_use, is_private, is_test_only, item_attrs,
};

/// `user` names `item`, which `owner` defines.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Use {
    pub user: FileId,
    pub owner: FileId,
    pub item: String,
}

/// Every use of one file's item by another file of the crate.
pub fn collect(krate: &Crate) -> Vec<Use> {
    let mut uses = Vec::new();
    for (file, source) in krate.files.iter().enumerate() {
        let mut refs = Refs {
            krate,
            file,
            module: source.module,
            uses: &mut uses,
        };
        refs.visit_file(&source.ast);
    }
    uses.sort();
    uses.dedup();
    uses
}

struct Refs<'a> {
    krate: &'a Crate,
    file: FileId,
    module: ModId,
    uses: &'a mut Vec<Use>,
}

impl Refs<'_> {
    fn record(&mut self, path: &PathRef) {
        for entity in self.krate.resolve(self.module, path) {
            if let Entity::Item { file, name, .. } = entity
                && file != self.file
            {
                self.uses.push(Use {
                    user: self.file,
                    owner: file,
                    item: name,
                });
            }
        }
    }

    /// Paths in a macro's tokens (`format!("{}", one_line(e))`): each run of
    /// `a::b::c` is resolved as if it were code.
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_sep = |i: usize| {
            matches!((tokens.get(i), tokens.get(i + 1)),
                (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                    if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
        };
        let is_ident = |i: usize| matches!(tokens.get(i), Some(TokenTree::Ident(_)));
        let mut i = 0;
        while i < tokens.len() {
            if let TokenTree::Group(group) = &tokens[i] {
                self.scan(group.stream());
                i += 1;
                continue;
            }
            let global = is_sep(i) && is_ident(i + 2);
            if !global && !is_ident(i) {
                i += 1;
                continue;
            }
            if global {
                i += 2;
            }
            let mut segs = vec![tokens[i].to_string()];
            while is_sep(i + 1) && is_ident(i + 3) {
                i += 3;
                segs.push(tokens[i].to_string());
            }
            i += 1;
            self.record(&PathRef { global, segs });
        }
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_item(&mut self, item: &'ast Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        match item {
            Item::Mod(m) => {
                let (Some((_, items)), Some(child)) = (
                    &m.content,
                    self.krate.child(self.module, &m.ident.to_string()),
                ) else {
                    return;
                };
                let module = std::mem::replace(&mut self.module, child);
                for item in items {
                    self.visit_item(item);
                }
                self.module = module;
            }
            Item::Use(u) if is_private(&u.vis) => {
                for import in flatten_use(u) {
                    // A glob counts through the names the file uses (`lookup`), except
                    // a glob of an enum's variants, which uses the enum.
                    let glob_of_module = import.alias.is_none()
                        && self
                            .krate
                            .resolve(self.module, &import.path)
                            .iter()
                            .any(|e| matches!(e, Entity::Module(_)));
                    if !glob_of_module {
                        self.record(&import.path);
                    }
                }
            }
            Item::Use(_) => {}
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_impl_item_fn(&mut self, item: &'ast ImplItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_impl_item_fn(self, item);
        }
    }

    fn visit_trait_item_fn(&mut self, item: &'ast TraitItemFn) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_trait_item_fn(self, item);
        }
    }

    // Attributes name derives and tools, and doc links are not uses.
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.record(&PathRef::from(path));
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.scan(mac.tokens.clone());
    }
}
