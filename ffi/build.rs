//! Gives the shared library its soname, so programs linked against one
//! release keep working with later compatible releases: `libconsenso.so.1`
//! from 1.0 on, and `libconsenso.so.0.MINOR` before (where, by semver, each
//! minor release may break). The file installed is
//! `libconsenso.so.MAJOR.MINOR.PATCH`.

fn main() {
    let var = |k: &str| std::env::var(k).expect("set by cargo");
    let (major, minor) = (
        var("CARGO_PKG_VERSION_MAJOR"),
        var("CARGO_PKG_VERSION_MINOR"),
    );
    let abi = if major == "0" {
        format!("0.{minor}")
    } else {
        major
    };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libconsenso.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
