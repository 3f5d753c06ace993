//! The host's C library, part of the Rust key. Proc macros and build scripts are
//! loaded or run on the host: a cache made on a runner image with a newer glibc holds
//! ones that need symbol versions an older image lacks, and the build fails there
//! although the target triple is the same.

/// `glibc 2.36` on a `-gnu` host, `musl` on a `-musl` host, `None` where the triple
/// names no C library whose version matters here.
pub fn c_library(host_triple: &str) -> Option<String> {
    if host_triple.contains("-gnu") {
        Some(format!(
            "glibc {}",
            glibc_version().unwrap_or_else(|| "unknown".to_owned())
        ))
    } else if host_triple.contains("-musl") {
        // Statically linked into each host program: nothing to match at run time.
        Some("musl".to_owned())
    } else {
        None
    }
}

/// The glibc this process runs on: the host's own when bmat is itself a glibc build.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_version() -> Option<String> {
    // SAFETY: returns a pointer to a static NUL-terminated string owned by glibc.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    version.to_str().ok().map(str::to_owned)
}

/// A bmat built for another C library asks glibc's own `getconf`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_version() -> Option<String> {
    let out = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    // "glibc 2.36"
    text.split_whitespace().nth(1).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gnu_host_names_its_glibc_version_and_others_their_library_or_none() {
        let gnu = c_library("x86_64-unknown-linux-gnu").expect("a gnu host");
        assert!(gnu.starts_with("glibc "), "{gnu}");
        // On this machine (glibc), the version is known and looks like one.
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let version = gnu.trim_start_matches("glibc ");
            assert!(
                version.split('.').all(|p| p.parse::<u32>().is_ok()),
                "{gnu}"
            );
        }
        assert_eq!(
            c_library("x86_64-unknown-linux-musl").as_deref(),
            Some("musl")
        );
        assert_eq!(c_library("aarch64-apple-darwin"), None);
    }
}
