//! The microkernel's privileged code holds no module subsystem: no ELF loader, no module
//! list, no symbol table, no `.modinfo`/parameter/`modules.dep` parsing. Checked on the
//! embedded kernel images' symbol tables, against the monolithic kernel, which must have all
//! of them (so the check can fail).

use kmodlab::artifacts::{KERNEL_MICROKERNEL, KERNEL_MONOLITHIC};
use kmodlab::image::{COMPONENTS, component_of, functions, text_report};

/// Components the microkernel's kernel must not contain.
const MODULE_SUBSYSTEM: [&str; 4] = [
    "module loader (kmod-loader)",
    "module subsystem",
    ".modinfo, parameters, modules.dep",
    "module API (kmod-api)",
];

#[test]
fn the_components_named_here_exist() {
    for c in MODULE_SUBSYSTEM {
        assert!(COMPONENTS.iter().any(|(n, _)| *n == c), "{c}");
    }
}

#[test]
fn microkernel_image_has_no_module_subsystem_symbols() {
    let offenders: Vec<String> = functions(KERNEL_MICROKERNEL)
        .expect("the microkernel image is ELF")
        .into_iter()
        .filter(|f| component_of(&f.name).is_some_and(|c| MODULE_SUBSYSTEM.contains(&c)))
        .map(|f| f.name)
        .collect();
    assert!(
        offenders.is_empty(),
        "the microkernel's kernel contains module-subsystem code: {offenders:#?}"
    );
}

#[test]
fn monolithic_image_has_them_and_is_larger() {
    let mono = text_report(KERNEL_MONOLITHIC).expect("monolithic image");
    let micro = text_report(KERNEL_MICROKERNEL).expect("microkernel image");
    for c in ["module loader (kmod-loader)", "module subsystem"] {
        assert!(
            mono.by_component[c] > 10_000,
            "the monolithic kernel should contain the {c}: {mono:#?}"
        );
        assert_eq!(micro.by_component[c], 0, "{micro:#?}");
    }
    assert!(
        micro.text_bytes < mono.text_bytes,
        "microkernel .text {} B is not smaller than monolithic {} B",
        micro.text_bytes,
        mono.text_bytes
    );
    // Both kernels schedule tasks and pass messages: the comparison is of the module
    // subsystem alone.
    assert!(mono.by_component["tasks and IPC"] > 0 && micro.by_component["tasks and IPC"] > 0);
}
