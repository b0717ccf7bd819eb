//! Follow-up runs (SPEC §6): `POST /api/followups/run` (admin) starts one,
//! `GET /api/followups/runs` (admin, manager) reads the run log. The run itself, its lock and its
//! schedule are [`crate::followups`]'.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use freshplan_api::followups::{RunList, RunOutcome, RunRecord, RunReport};
use freshplan_kernel::{Actor, Role};
use freshplan_store_postgres::followup::{ExclusiveRun, RunOutcome as StoredOutcome};

use crate::AppState;
use crate::api::common::{Result, limit, not_configured, params};
use crate::auth::Caller;
use crate::followups::{RunFailed, log_failure, log_report};
use crate::problem::Problem;

/// `limit` of `GET /api/followups/runs` when none is given.
pub const DEFAULT_RUNS: u32 = 20;
/// The largest `limit` of `GET /api/followups/runs`.
pub const MAX_RUNS: u32 = 100;

/// Registers `POST /api/followups/run` and `GET /api/followups/runs`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/followups/run", web::post().to(run))
        .route("/api/followups/runs", web::get().to(runs));
}

/// The body of a run report.
fn report(r: &freshplan_followup::RunReport) -> RunReport {
    RunReport {
        run_id: r.run_id,
        t3_count: r.t3_count,
        t7_count: r.t7_count,
        skipped_count: r.skipped_count,
        started_at: r.started_at,
        finished_at: r.finished_at,
    }
}

/// The body of a row of the run log.
fn record(r: freshplan_store_postgres::RunRecord) -> RunRecord {
    let RunReport {
        run_id,
        t3_count,
        t7_count,
        skipped_count,
        started_at,
        finished_at,
    } = report(&r.report);
    RunRecord {
        run_id,
        t3_count,
        t7_count,
        skipped_count,
        started_at,
        finished_at,
        outcome: match r.outcome {
            StoredOutcome::Completed => RunOutcome::Completed,
            StoredOutcome::Failed => RunOutcome::Failed,
        },
        error: r.error,
    }
}

fn require_admin(actor: &Actor, what: &str) -> Result<()> {
    if actor.has_role(Role::Admin) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!("{what} is for admins.")))
    }
}

/// `POST /api/followups/run`
#[utoipa::path(post, path = "/api/followups/run", operation_id = "run_followups", tag = "followups", security(("bearer" = [])),
    responses(
        (status = 200, description = "The run report: T+3/T+7 SENT counts, SKIPPED in `skippedCount`", body = RunReport),
        (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden),
        (status = 409, description = "Another run (on any replica) holds the cluster-wide lock", body = Problem),
        (status = 500, description = "The run failed after committing what `runId` names (see GET /api/followups/runs)", body = Problem),
        (status = 503, response = crate::openapi::Unavailable)))]
pub async fn run(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse> {
    require_admin(&caller.0, "Triggering a follow-up run")?;
    match state.followups.run().await {
        Ok(ExclusiveRun::Busy) => Err(Problem::new(
            StatusCode::CONFLICT,
            "followup-run-in-progress",
            "Another follow-up run holds the cluster-wide lock; try again when it has finished.",
        )),
        Ok(ExclusiveRun::Finished(Ok(done))) => {
            log_report(&done);
            Ok(HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(report(&done)))
        }
        Ok(ExclusiveRun::Finished(Err(failure))) => {
            // Logged once, with the cause chain; the body stays opaque but names the run.
            log_failure(&failure);
            let mut problem = Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "The follow-up run failed; what it committed before is recorded under runId.",
            );
            let mut extra = serde_json::Map::new();
            extra.insert("runId".into(), failure.report.run_id.to_string().into());
            problem.extra = Some(extra);
            Err(problem)
        }
        Err(RunFailed::NotConfigured) => Err(not_configured()),
        Err(e @ RunFailed::Store(_)) => Err(Problem::internal(&e)),
    }
}

/// `GET /api/followups/runs`
#[utoipa::path(get, path = "/api/followups/runs", operation_id = "list_followup_runs", tag = "followups", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "How many runs (default 20)")),
    responses(
        (status = 200, description = "The latest runs, newest first", body = RunList),
        (status = 400, response = crate::openapi::BadRequest), (status = 401, response = crate::openapi::Unauthorized), (status = 403, response = crate::openapi::Forbidden)))]
pub async fn runs(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse> {
    let actor = &caller.0;
    if !(actor.has_role(Role::Admin) || actor.has_role(Role::Manager)) {
        return Err(Problem::forbidden(
            "The follow-up run log is for admins and managers.",
        ));
    }
    let mut n = DEFAULT_RUNS;
    for (k, v) in params(req.query_string(), &["limit"])? {
        if k == "limit" {
            n = limit("limit", &v, MAX_RUNS)?;
        }
    }
    let runs = state
        .followups
        .store()
        .runs(actor, n)
        .await
        .map_err(|e| Problem::internal(&e))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(RunList {
            runs: runs.into_iter().map(record).collect(),
        }))
}
