//! The job's end: commands queued on the agent shim while the job runs (`bmat job
//! defer`, a restore's `--save-at-end`) and run in order by `bmat job end`, which a
//! job wrapper calls after the job script with its status. The shim only holds the
//! queue; a job killed before its end runs nothing.

mod defer;
mod end;
mod steps;

pub use defer::{deferred_save, queue};
pub use end::end;
pub use steps::{build_time_blocking, record};

use crate::cli::JobCommand;
use crate::context::JobContext;
use crate::output;

/// Runs `bmat job defer|end`; the exit code. A failure of the queue (no shim, a shim
/// that refuses) is a failure of the cache step: exit 0 with a `warning:`, 1 under
/// `--strict`.
pub fn run(command: JobCommand, ctx: &JobContext, strict: bool) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return output::step_failed(&format!("cannot start the async runtime: {e}"), strict);
        }
    };
    match command {
        JobCommand::Defer { when, argv } => {
            let cmd = defer::command(argv, ctx, when.into(), None);
            match runtime.block_on(queue(&cmd, ctx)) {
                Ok(line) => {
                    let _ = output::eprintln(&line);
                    0
                }
                Err(e) => output::step_failed(&e, strict),
            }
        }
        JobCommand::End {
            status,
            command_deadline,
            deadline,
        } => runtime.block_on(end(ctx, status, command_deadline, deadline, strict)),
    }
}
