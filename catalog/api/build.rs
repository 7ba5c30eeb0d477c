#![expect(
    clippy::disallowed_macros,
    reason = "build scripts talk to cargo on stdout"
)]

//! Compiles the catalog's `.proto` with the pure-Rust `protox`, so building
//! Strata needs no `protoc` install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/strata/catalog/v1/catalog.proto";
    println!("cargo:rerun-if-changed={proto}");
    let file_descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}
