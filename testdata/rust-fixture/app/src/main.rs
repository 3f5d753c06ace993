paste::paste! {
    fn [<pid _ of _ self>]() -> i32 {
        // SAFETY: getpid has no preconditions.
        unsafe { libc::getpid() }
    }
}

fn main() {
    println!("{} (pid {})", fixture_core::describe(42, b"a\nb\n"), pid_of_self());
}
