//! Gives the shared library its soname, `libconsenso.so.MAJOR`, so programs
//! linked against one release keep working with later releases of the same
//! major version (the file installed is `libconsenso.so.MAJOR.MINOR.PATCH`).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("set by cargo");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libconsenso.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
