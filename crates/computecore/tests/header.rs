//! The header check: `include/computecore.h` and `libcomputecore.so` agree.
//!
//! * every function the header declares is exported by the library, and every export is
//!   declared (compared with the library's dynamic symbol table, `nm -D`);
//! * every enumerator, HRESULT macro and constant has the Windows value the library uses;
//! * every struct has the size and field offsets of the library's `#[repr(C)]` type, and
//!   every enum is 4 bytes;
//!
//! compiled both as C11 and as C++17 (`cc`, `c++`), with `-Wall -Wextra -Werror`.

use computecore::abi::{CONSTANTS, ENUMS, STRUCTS};
use computecore::EXPORTS;
use hcs::HResult;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn header() -> String {
    std::fs::read_to_string(repo().join("include/computecore.h")).expect("include/computecore.h")
}

/// `libcomputecore.so` of this build: cargo builds the cdylib next to the test's deps.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let lib = profile_dir.join("libcomputecore.so");
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p computecore`",
        lib.display()
    );
    lib
}

/// The function names declared in the header (`... WINAPI Name(`).
fn declared_functions(header: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (index, _) in header.match_indices("WINAPI ") {
        let rest = &header[index + "WINAPI ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with('(') && !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

#[test]
fn every_declared_function_is_exported_and_every_export_declared() {
    let declared = declared_functions(&header());
    let listed: BTreeSet<String> = EXPORTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        declared, listed,
        "computecore.h and computecore::EXPORTS differ"
    );

    let output = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("nm (binutils) must be installed: scripts/setup installs it");
    assert!(output.status.success());
    let symbols: BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (_, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            (kind == "T").then(|| name.to_string())
        })
        .collect();
    let missing: Vec<_> = declared.difference(&symbols).collect();
    assert!(missing.is_empty(), "declared but not exported: {missing:?}");
    let extra: Vec<_> = symbols
        .iter()
        .filter(|s| s.starts_with("Hcs") && !declared.contains(*s))
        .collect();
    assert!(extra.is_empty(), "exported but not declared: {extra:?}");
}

/// A program printing `name value` for everything the header defines that we check.
fn probe_source() -> String {
    let mut lines = Vec::new();
    for (enum_name, values) in ENUMS {
        lines.push(format!(
            "    printf(\"sizeof({enum_name}) %lld\\n\", (long long)sizeof({enum_name}));"
        ));
        for (name, _) in *values {
            // Through uint32_t then int32_t: the 32 bits C stores, sign-extended.
            lines.push(format!(
                "    printf(\"{name} %lld\\n\", (long long)(int32_t)(uint32_t){name});"
            ));
        }
    }
    for layout in STRUCTS {
        let name = layout.name;
        lines.push(format!(
            "    printf(\"sizeof({name}) %lld\\n\", (long long)sizeof({name}));"
        ));
        for (field, _) in layout.fields {
            lines.push(format!(
                "    printf(\"offsetof({name}.{field}) %lld\\n\", (long long)offsetof({name}, {field}));"
            ));
        }
    }
    for (name, _) in CONSTANTS {
        lines.push(format!(
            "    printf(\"{name} %llu\\n\", (unsigned long long)({name}));"
        ));
    }
    for hr in HResult::ALL {
        let name = hr.name().unwrap();
        lines.push(format!("    printf(\"{name} %d\\n\", (int)({name}));"));
    }
    for name in [
        "HRESULT",
        "DWORD",
        "UINT64",
        "WCHAR",
        "HANDLE",
        "PCWSTR",
        "HCS_OPERATION",
    ] {
        lines.push(format!(
            "    printf(\"sizeof({name}) %lld\\n\", (long long)sizeof({name}));"
        ));
    }
    format!(
        "#include \"computecore.h\"\n#include <stdio.h>\n#include <stddef.h>\n\nint main(void) {{\n{}\n    return 0;\n}}\n",
        lines.join("\n")
    )
}

/// What the library says the probe must print.
fn expected() -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (enum_name, values) in ENUMS {
        map.insert(format!("sizeof({enum_name})"), "4".to_string());
        for (name, value) in *values {
            map.insert(name.to_string(), (*value as u32 as i32).to_string());
        }
    }
    for layout in STRUCTS {
        map.insert(format!("sizeof({})", layout.name), layout.size.to_string());
        for (field, offset) in layout.fields {
            map.insert(
                format!("offsetof({}.{field})", layout.name),
                offset.to_string(),
            );
        }
    }
    for (name, value) in CONSTANTS {
        map.insert(name.to_string(), value.to_string());
    }
    for hr in HResult::ALL {
        map.insert(hr.name().unwrap().to_string(), hr.0.to_string());
    }
    for (name, size) in [
        ("HRESULT", 4),
        ("DWORD", 4),
        ("UINT64", 8),
        ("WCHAR", 2),
        ("HANDLE", 8),
        ("PCWSTR", 8),
        ("HCS_OPERATION", 8),
    ] {
        map.insert(format!("sizeof({name})"), size.to_string());
    }
    map
}

fn compile_and_run(compiler: &str, standard: &str, extension: &str) -> BTreeMap<String, String> {
    let dir = std::env::temp_dir().join(format!("hcs-header-{}-{compiler}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join(format!("probe.{extension}"));
    std::fs::write(&source, probe_source()).unwrap();
    let binary = dir.join("probe");
    let status = Command::new(compiler)
        .arg(format!("-std={standard}"))
        .args(["-Wall", "-Wextra", "-Werror", "-I"])
        .arg(repo().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .status()
        .unwrap_or_else(|e| panic!("{compiler} must be installed (build-essential): {e}"));
    assert!(
        status.success(),
        "{compiler} -std={standard} could not compile the header probe"
    );
    let output = Command::new(&binary).output().unwrap();
    assert!(output.status.success());
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn check(compiler: &str, standard: &str, extension: &str) {
    let actual = compile_and_run(compiler, standard, extension);
    let expected = expected();
    let mut differences = Vec::new();
    for (name, want) in &expected {
        match actual.get(name) {
            Some(got) if got == want => {}
            got => differences.push(format!("{name}: header {got:?}, library {want}")),
        }
    }
    assert!(
        differences.is_empty(),
        "{compiler} {standard}: computecore.h disagrees with libcomputecore.so:\n{}",
        differences.join("\n")
    );
    assert_eq!(actual.len(), expected.len());
}

#[test]
fn header_values_and_layouts_match_the_library_in_c11() {
    check("cc", "c11", "c");
}

#[test]
fn header_values_and_layouts_match_the_library_in_cxx17() {
    check("c++", "c++17", "cpp");
}
