fn main() {
    // reqwest is built without a default TLS provider (rustls-no-provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::process::exit(bmat::run::main());
}
