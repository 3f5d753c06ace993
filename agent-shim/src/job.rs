//! What the shim keeps of the job, for its end. Deferred commands: `bmat job defer`
//! (and `--save-at-end`) queues one, `bmat job end` takes the whole queue and runs it.
//! The shim only holds them, for the life of the job; it never runs one. A shim that
//! stops with commands still queued (the job was killed before `bmat job end`) runs
//! nothing and says so. Steps: each bmat command reports its outcome, and `bmat job
//! end` prints them as the job's summary.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bmat_wire::api::{DeferredCommand, DeferredQueue, ErrorBody, JobStep, JobSteps, Queued};

/// More than any job's end needs; a bound on what a runaway script can pile up.
const MAX_QUEUED: usize = 64;
/// Steps kept for the summary; later ones are dropped.
const MAX_STEPS: usize = 256;

#[derive(Clone, Default)]
pub struct Queue {
    commands: Arc<Mutex<Vec<DeferredCommand>>>,
    steps: Arc<Mutex<Vec<JobStep>>>,
}

/// A panic while holding a lock cannot leave a Vec half-changed.
fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DeferredCommand>> {
        locked(&self.commands)
    }

    /// Says, when the shim stops, what will never run.
    pub fn log_pending(&self) {
        let pending = self.lock();
        if pending.is_empty() {
            return;
        }
        let names: Vec<String> = pending.iter().map(|c| c.argv.join(" ")).collect();
        tracing::warn!(
            "stopping with {} deferred command(s) not run (the job ended without `bmat job end`): {}",
            pending.len(),
            names.join("; ")
        );
    }
}

pub fn router(queue: Queue) -> Router {
    Router::new()
        .route("/v1/job/deferred", post(defer))
        .route("/v1/job/deferred/take", post(take))
        .route("/v1/job/steps", get(steps).post(step))
        .with_state(queue)
}

async fn defer(State(queue): State<Queue>, Json(cmd): Json<DeferredCommand>) -> Response {
    if cmd.argv.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a deferred command needs a program",
        );
    }
    let mut pending = queue.lock();
    if pending.len() >= MAX_QUEUED {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("{MAX_QUEUED} deferred commands are queued already"),
        );
    }
    tracing::info!("deferred: {}", cmd.argv.join(" "));
    pending.push(cmd);
    Json(Queued {
        queued: pending.len(),
    })
    .into_response()
}

async fn take(State(queue): State<Queue>) -> Json<DeferredQueue> {
    let commands = std::mem::take(&mut *queue.lock());
    tracing::info!(
        "job end: {} deferred command(s) handed over",
        commands.len()
    );
    Json(DeferredQueue { commands })
}

async fn step(State(queue): State<Queue>, Json(step): Json<JobStep>) -> Json<Queued> {
    let mut steps = locked(&queue.steps);
    if steps.len() < MAX_STEPS {
        steps.push(step);
    }
    Json(Queued {
        queued: steps.len(),
    })
}

async fn steps(State(queue): State<Queue>) -> Json<JobSteps> {
    Json(JobSteps {
        steps: locked(&queue.steps).clone(),
    })
}

fn refuse(status: StatusCode, error: &str) -> Response {
    let body = ErrorBody {
        error: error.to_owned(),
        code: None,
    };
    (status, Json(body)).into_response()
}
