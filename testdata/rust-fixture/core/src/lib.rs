cfg_if::cfg_if! {
    if #[cfg(unix)] {
        pub const PLATFORM: &str = "unix";
    } else {
        pub const PLATFORM: &str = "other";
    }
}

pub fn describe(n: u64, haystack: &[u8]) -> String {
    let mut buf = itoa::Buffer::new();
    let newlines = memchr::memchr_iter(b'\n', haystack).count();
    format!("{} on {PLATFORM}, {newlines} lines", buf.format(n))
}
