//! The committed header must be exactly what cbindgen writes from these
//! sources. `CONSENSO_BLESS=1 cargo test -p consenso-ffi header` (or
//! `make header`) rewrites it.

use std::path::PathBuf;

/// The header's version macros, as `ffi/cbindgen.toml` must state them.
fn version_macros() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let number = |i: usize| version.split(['.', '-']).nth(i).unwrap_or("0");
    format!(
        "#define CONSENSO_VERSION \"{version}\"\n\
         #define CONSENSO_VERSION_MAJOR {}\n\
         #define CONSENSO_VERSION_MINOR {}\n\
         #define CONSENSO_VERSION_PATCH {}\n",
        number(0),
        number(1),
        number(2)
    )
}

/// What cbindgen writes from ffi/src with ffi/cbindgen.toml: the same as
/// `cbindgen --config ffi/cbindgen.toml --crate consenso-ffi ffi`.
fn generate() -> String {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml parses");
    assert!(
        config
            .after_includes
            .as_deref()
            .is_some_and(|text| text.contains(&version_macros())),
        "ffi/cbindgen.toml's version macros must match Cargo.toml:\n{}",
        version_macros()
    );
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    let text = String::from_utf8(out).expect("the header is UTF-8");
    c_comments_only(&text)
}

/// cbindgen ends its `#if` blocks with `// ...` comments; the header uses
/// C comments only (it must also pass -std=c89-era tools and style
/// checkers), so those become `/* ... */`.
fn c_comments_only(text: &str) -> String {
    text.lines()
        .map(|line| match line.split_once("// ") {
            Some((code, comment)) if code.starts_with('#') || code.starts_with('}') => {
                format!("{code}/* {comment} */")
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn header_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../include/consenso.h");
    let fresh = generate();
    if std::env::var_os("CONSENSO_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("include/consenso.h is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/consenso.h is out of date with ffi/src: run `make header` and commit it"
    );
}
