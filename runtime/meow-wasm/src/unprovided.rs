//! Imports this host does not provide, linked to stubs that fail when called: so a plugin built
//! against a later `0.1.x` or `0.2.x` of `meow:bot` (which only add functions) loads, and fails
//! only if it calls what is missing, with the import named.
//!
//! Two cases, and only these: a function of a `meow:bot` interface this host lacks is added to
//! the host's own instance of that interface (the component may name it `@0.1.9`; wasmtime
//! resolves that to ours, `@0.1.4`, by semver, so a new instance under the component's name would
//! shadow every real function); an interface of a package the host does not link at all is
//! stubbed whole under its own name. A function the host has under another type, or a missing
//! function of a WASI package the host does link, still refuses to link.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker, LinkerInstance, ResourceType};

/// Packages whose interfaces the host links (WASI's through `wasmtime_wasi`, ours through the
/// bindings).
const LINKED_PACKAGES: &[&str] = &[
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
];

/// A call to an import this host does not provide: the import, and the host's WIT it was
/// looked for in.
#[derive(Debug, thiserror::Error)]
#[error("called {0}, which this host ({1}) does not provide")]
pub(crate) struct Unprovided(pub String, pub &'static str);

/// The host's version of the `meow:bot` package of the same minor version as `version`.
fn host_version(version: &str) -> Option<&'static str> {
    crate::WIT_VERSIONS.iter().copied().find(|w| {
        let host = w.strip_prefix("meow:bot@").unwrap_or(w);
        version.split('.').take(2).eq(host.split('.').take(2))
    })
}

/// The name under which the host links the `meow:bot` interface `name` names (any `0.1.x` or
/// `0.2.x`), or `None` for another package or minor version.
fn ours(name: &str) -> Option<String> {
    let (interface, version) = name.strip_prefix("meow:bot/")?.split_once('@')?;
    let host = host_version(version)?.strip_prefix("meow:bot@")?;
    Some(format!("meow:bot/{interface}@{host}"))
}

/// The host's types of the WASI resources other interfaces alias (`use wasi:io/streams.{…}`
/// in `wasi:http/types`), keyed by their type in the component: a stub instance must export
/// the host's own type under those names, or linking fails on a resource mismatch.
fn aliased_resources(component: &Component, engine: &Engine) -> Vec<(ResourceType, ResourceType)> {
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};
    let host = |interface: &str, export: &str| match (interface, export) {
        ("wasi:io/streams", "input-stream") => Some(ResourceType::host::<DynInputStream>()),
        ("wasi:io/streams", "output-stream") => Some(ResourceType::host::<DynOutputStream>()),
        ("wasi:io/poll", "pollable") => Some(ResourceType::host::<DynPollable>()),
        ("wasi:io/error", "error") => Some(ResourceType::host::<IoError>()),
        _ => None,
    };
    let mut found = Vec::new();
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let interface = name.split('@').next().unwrap_or(name);
        for (export, item) in instance.exports(engine) {
            if let (ComponentItem::Resource(theirs), Some(ours)) = (item.ty, host(interface, export)) {
                found.push((theirs, ours));
            }
        }
    }
    found
}

/// Adds stubs to `linker` for what `component` imports and the host lacks (see the module doc).
pub(crate) fn stub<T: 'static>(linker: &mut Linker<T>, component: &Component) -> wasmtime::Result<()> {
    let engine = linker.engine().clone();
    let aliased = aliased_resources(component, &engine);
    let ty = component.component_type();
    for (name, item) in ty.imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        let (target, whole) = if name.starts_with("meow:bot/") {
            // Another minor version of ours is not compatible: let linking say so.
            let Some(host_name) = ours(name) else { continue };
            (host_name, false)
        } else if LINKED_PACKAGES.iter().any(|p| name.starts_with(p)) {
            continue;
        } else {
            (name.to_owned(), true)
        };
        // The WIT an error names: the one of the same minor version, or the 0.1 line.
        let wit = name
            .split_once('@')
            .and_then(|(_, v)| host_version(v))
            .filter(|_| !whole)
            .unwrap_or(crate::WIT_VERSION);
        let mut into = linker.instance(&target)?;
        for (export, item) in instance.exports(&engine) {
            let full = format!("{name}#{export}");
            match item.ty {
                ComponentItem::ComponentFunc(_) => define_failing(&mut into, export, full, wit),
                ComponentItem::Resource(theirs) if whole => {
                    let host = aliased.iter().find(|(t, _)| *t == theirs).map(|(_, ours)| *ours);
                    into.resource(export, host.unwrap_or(ResourceType::host::<()>()), |_, _| Ok(()))
                }
                _ => Ok(()),
            }
            .or_else(|e| if whole { Err(e) } else { Ok(()) })?;
        }
    }
    Ok(())
}

/// Defines `export` as a function that fails, naming `full`; in a `meow:bot` instance this fails
/// (and is ignored) for a function the host already has.
fn define_failing<T: 'static>(
    into: &mut LinkerInstance<'_, T>,
    export: &str,
    full: String,
    wit: &'static str,
) -> wasmtime::Result<()> {
    into.func_new(export, move |_, _, _, _| {
        Err(wasmtime::Error::new(Unprovided(full.clone(), wit)))
    })
}

#[cfg(test)]
mod tests {
    use super::ours;

    #[test]
    fn a_later_patch_of_our_interfaces_maps_to_the_host_instance_and_a_new_minor_does_not() {
        assert_eq!(
            ours("meow:bot/messaging@0.1.9").as_deref(),
            Some("meow:bot/messaging@0.1.4")
        );
        assert_eq!(ours("meow:bot/kv@0.1.0").as_deref(), Some("meow:bot/kv@0.1.4"));
        assert_eq!(ours("meow:bot/kv@0.2.4").as_deref(), Some("meow:bot/kv@0.2.1"));
        assert_eq!(ours("meow:bot/kv@0.3.0"), None);
        assert_eq!(ours("wasi:http/types@0.2.10"), None);
    }
}
