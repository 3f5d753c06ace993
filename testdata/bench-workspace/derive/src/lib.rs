//! `#[derive(Describe)]`: an inherent `fn describe(&self) -> Vec<(&'static str, String)>`
//! listing a struct's fields by name, for `config show` style output.
//!
//! Field attributes, in `#[describe(...)]`:
//! - `skip`: leave the field out;
//! - `rename = "name"`: the name to show;
//! - `secret`: show whether the field is set, never its value (an `Option`);
//! - `display`: render with `Display` instead of `Debug`;
//! - `with = path::to::fn`: render with `fn(&T) -> String`;
//! - `flatten`: the field's own `describe()` pairs, in place.
//!
//! On the struct, `#[describe(prefix = "store.")]` prefixes every name.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, LitStr, Member, parse_macro_input, spanned::Spanned};

#[proc_macro_derive(Describe, attributes(describe))]
pub fn derive_describe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// How one field is shown.
enum Render {
    Debug,
    Display,
    Secret,
    With(syn::Path),
    Flatten,
}

struct FieldSpec {
    member: Member,
    name: String,
    render: Render,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "Describe is for structs; describe an enum with a field that has `display`",
        ));
    };
    let prefix = container_prefix(input)?;
    let mut specs = Vec::new();
    for (index, field) in data.fields.iter().enumerate() {
        let member = match &field.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::Unnamed(syn::Index::from(index)),
        };
        let default_name = match &field.ident {
            // A raw identifier (`r#type`) is shown without its `r#`.
            Some(ident) => ident.to_string().trim_start_matches("r#").to_owned(),
            None => index.to_string(),
        };
        if let Some(spec) = field_spec(field, member, default_name)? {
            specs.push(spec);
        }
    }
    let pushes = specs.iter().map(|spec| push(spec, &prefix));
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let capacity = specs.len();
    let out = format_ident!("__describe_out");
    let body = if matches!(data.fields, Fields::Unit) {
        quote! { ::std::vec::Vec::new() }
    } else {
        quote! {
            let mut #out = ::std::vec::Vec::with_capacity(#capacity);
            #( #pushes )*
            #out
        }
    };
    Ok(quote! {
        impl #impl_generics #ident #type_generics #where_clause {
            /// This value's fields as (name, rendered value) pairs, in declaration order.
            pub fn describe(&self) -> ::std::vec::Vec<(&'static str, ::std::string::String)> {
                #body
            }
        }
    })
}

/// The statement that adds one field's pairs to the output vector.
fn push(spec: &FieldSpec, prefix: &str) -> Tokens {
    let member = &spec.member;
    let out = format_ident!("__describe_out");
    // The name is a literal, so the prefix is joined here, not at run time.
    let name = LitStr::new(&format!("{prefix}{}", spec.name), member.span());
    match &spec.render {
        Render::Debug => quote! {
            #out.push((#name, ::std::format!("{:?}", self.#member)));
        },
        Render::Display => quote! {
            #out.push((#name, ::std::string::ToString::to_string(&self.#member)));
        },
        Render::Secret => quote! {
            #out.push((
                #name,
                ::std::string::String::from(if self.#member.is_some() { "(set)" } else { "(unset)" }),
            ));
        },
        Render::With(path) => quote! {
            #out.push((#name, #path(&self.#member)));
        },
        Render::Flatten => quote! {
            #out.extend(self.#member.describe());
        },
    }
}

fn container_prefix(input: &DeriveInput) -> syn::Result<String> {
    let mut prefix = String::new();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("describe")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("prefix") {
                prefix = meta.value()?.parse::<LitStr>()?.value();
                Ok(())
            } else {
                Err(meta.error("expected `prefix = \"...\"` on the struct"))
            }
        })?;
    }
    Ok(prefix)
}

/// The field's spec, or `None` when it is skipped.
fn field_spec(field: &syn::Field, member: Member, name: String) -> syn::Result<Option<FieldSpec>> {
    let mut spec = FieldSpec {
        member,
        name,
        render: Render::Debug,
    };
    let mut skip = false;
    let mut renamed = false;
    let mut renders = 0;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("describe")) {
        attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path.is_ident("skip") {
                skip = true;
            } else if path.is_ident("rename") {
                spec.name = meta.value()?.parse::<LitStr>()?.value();
                renamed = true;
            } else {
                spec.render = if path.is_ident("secret") {
                    Render::Secret
                } else if path.is_ident("display") {
                    Render::Display
                } else if path.is_ident("flatten") {
                    Render::Flatten
                } else if path.is_ident("with") {
                    // `with = path` or, as serde spells it, `with = "path"`.
                    let value = meta.value()?;
                    if value.peek(LitStr) {
                        Render::With(value.parse::<LitStr>()?.parse()?)
                    } else {
                        Render::With(value.parse()?)
                    }
                } else {
                    return Err(meta.error(
                        "unknown describe option; expected skip, rename, secret, display, with or flatten",
                    ));
                };
                renders += 1;
            }
            Ok(())
        })?;
    }
    if renders > 1 {
        return Err(syn::Error::new(
            field.span(),
            "choose one of secret, display, with and flatten",
        ));
    }
    if renamed && matches!(spec.render, Render::Flatten) {
        return Err(syn::Error::new(
            field.span(),
            "a flattened field has no name of its own to rename",
        ));
    }
    Ok((!skip).then_some(spec))
}
