"""The TrainingJob lifecycle as a pure function: each transition, and that re-running a step changes nothing."""

from __future__ import annotations

from dataclasses import replace

from elastic_operator.lifecycle.directive import EXIT, RUN, WAIT, directive_for
from elastic_operator.lifecycle.state import (
    FAILED,
    QUEUED,
    RESCALING,
    RUNNING,
    STARTING,
    SUCCEEDED,
    SUSPENDED,
    WORKER_FAILED,
    WORKER_LOST,
    JobRuntime,
    Leaving,
    Slot,
    from_status,
    to_status,
)
from elastic_operator.lifecycle.step import (
    Change,
    Inputs,
    JobSpecFacts,
    PodFacts,
    ReportFacts,
    Step,
    Timeouts,
    advance,
    mark_created,
    worker_pod_name,
)

NOW = 1_000_000.0
SPEC = JobSpecFacts(name="job", min_workers=2, max_workers=4)


def worker(slot: int, phase: str = "Running", **kw: object) -> PodFacts:
    return PodFacts(name=worker_pod_name("job", slot), role="worker", slot=slot, phase=phase, node=f"n{slot}", **kw)  # type: ignore[arg-type]


def rdzv(name: str = "job-rdzv-1", phase: str = "Running") -> PodFacts:
    return PodFacts(name=name, role="rendezvous", slot=None, phase=phase, ip="10.0.0.9")


def running(n: int, gen: int = 1) -> JobRuntime:
    return JobRuntime(
        phase=RUNNING,
        rescale_generation=gen,
        placement=tuple(Slot(i, f"n{i}", seen=True) for i in range(n)),
        members=tuple(range(n)),
        next_slot=n,
        rendezvous_pod="job-rdzv-1",
        rendezvous_seen=True,
        rendezvous_count=1,
        start_time=NOW - 100,
    )


def reports(slots: range | list[int], gen: int, state: str = "running") -> dict[str, ReportFacts]:
    return {worker_pod_name("job", s): ReportFacts(generation=gen, state=state, time=NOW) for s in slots}


def step(rt: JobRuntime, pods: list[PodFacts], rep: dict[str, ReportFacts] | None = None, **kw: object) -> Step:
    return advance(Inputs(spec=kw.pop("spec", SPEC), runtime=rt, pods=tuple(pods), reports=rep or {}, **kw), NOW)  # type: ignore[arg-type]


def test_admit_creates_rendezvous_and_pinned_workers_then_is_idempotent() -> None:
    s = step(JobRuntime(), [], change=Change("admit", 2, add_nodes=("a", "b"), reason="fits"))
    assert s.runtime.phase == STARTING
    assert s.runtime.rescale_generation == 1
    assert [(c.slot, c.node) for c in s.create_workers] == [(0, "a"), (1, "b")]
    assert s.create_rendezvous == "job-rdzv-1"
    assert s.runtime.members == (0, 1)
    assert [e.reason for e in s.events] == ["Admitted"]
    # the watch has not delivered the pods yet: the same creates again (409 is fine), nothing else
    again = step(s.runtime, [])
    assert [c.slot for c in again.create_workers] == [0, 1]
    assert again.runtime == s.runtime
    assert not again.events


def test_starting_becomes_running_only_when_every_member_reports_the_current_generation() -> None:
    rt = replace(running(2), phase=STARTING)
    pods = [worker(0), worker(1), rdzv()]
    assert step(rt, pods, reports([0], 1)).runtime.phase == STARTING
    assert step(rt, pods, {**reports([0], 1), **reports([1], 0)}).runtime.phase == STARTING
    done = step(rt, pods, reports([0, 1], 1))
    assert done.runtime.phase == RUNNING
    assert step(done.runtime, pods, reports([0, 1], 1)).idle


def test_grow_creates_pods_first_and_opens_the_next_generation_when_they_run() -> None:
    rt = running(2)
    pods = [worker(0), worker(1), rdzv()]
    s = step(rt, pods, reports([0, 1], 1), change=Change("grow", 3, add_nodes=("c",), reason="spare capacity"))
    assert s.runtime.phase == RESCALING
    assert s.runtime.rescale_generation == 1  # not yet: the new pod must run first
    assert [(c.slot, c.node) for c in s.create_workers] == [(2, "c")]
    assert directive_for(s.runtime, 2, "uid", "10.0.0.9:29400").action == WAIT
    assert directive_for(s.runtime, 0, "uid", "10.0.0.9:29400").action == RUN
    pending = step(s.runtime, [*pods, worker(2, phase="Pending")])
    assert pending.runtime.rescale_generation == 1
    ready = step(pending.runtime, [*pods, worker(2)])
    assert ready.runtime.rescale_generation == 2
    assert ready.runtime.members == (0, 1, 2)
    d = directive_for(ready.runtime, 2, "uid", "10.0.0.9:29400")
    assert (d.action, d.nnodes, d.rdzv_id) == (RUN, 3, "uid-g2")
    running3 = step(ready.runtime, [*pods, worker(2)], reports([0, 1, 2], 2))
    assert running3.runtime.phase == RUNNING
    assert running3.runtime.rescales == {"grow": 1}


def test_shrink_opens_a_generation_without_the_leaving_slot_and_deletes_it_after_its_checkpoint() -> None:
    rt = running(3)
    pods = [worker(0), worker(1), worker(2), rdzv()]
    s = step(rt, pods, reports(range(3), 1), change=Change("shrink", 2, remove_slots=(2,), reason="queue head"))
    assert s.runtime.members == (0, 1)
    assert s.runtime.rescale_generation == 2
    assert [x.slot for x in s.runtime.leaving] == [2]
    assert directive_for(s.runtime, 2, "uid", "e:1").action == EXIT
    assert not s.delete_pods  # not before it reported its checkpoint
    acked = step(s.runtime, pods, {**reports([0, 1], 2), **reports([2], 1, state="exited")})
    assert acked.delete_pods == ((worker_pod_name("job", 2), "leaving slot 2: checkpointed and exited"),)
    gone = step(acked.runtime, [worker(0), worker(1), rdzv()], reports([0, 1], 2))
    assert gone.runtime.leaving == ()
    assert gone.runtime.phase == RUNNING


def test_leaving_pod_is_deleted_after_the_deadline_even_without_a_report() -> None:
    rt = replace(running(2), leaving=(Leaving(5, NOW - 61),))
    pods = [worker(0), worker(1), worker(5), rdzv()]
    s = step(rt, pods, reports([0, 1], 1), timeouts=Timeouts(shrink_deadline_s=60))
    assert (worker_pod_name("job", 5), "leaving slot 5: deadline passed") in s.delete_pods


def test_lost_worker_continues_above_min_without_consuming_the_failure_budget() -> None:
    rt = running(3)
    s = step(rt, [worker(0), worker(1), rdzv()], reports([0, 1], 1))  # slot 2's pod vanished
    assert s.runtime.members == (0, 1)
    assert s.runtime.rescale_generation == 2
    assert s.runtime.phase == RESCALING
    assert s.runtime.restarts == {WORKER_LOST: 1}
    assert "WorkerLost" in [e.reason for e in s.events]


def test_failed_worker_consumes_budget_and_requeues_below_min() -> None:
    rt = running(2)
    s = step(rt, [worker(0), worker(1, phase="Failed", exit_code=1), rdzv()])
    assert s.runtime.restarts == {WORKER_FAILED: 1}
    assert s.runtime.phase == QUEUED
    assert s.runtime.placement == ()
    assert {x.slot for x in s.runtime.leaving} == {0}
    assert (worker_pod_name("job", 1), "pod job-w1 failed with exit code 1") in s.delete_pods
    assert directive_for(s.runtime, 0, "uid", "e:1").action == EXIT


def test_failure_budget_exhausted_fails_the_job_and_releases_pods() -> None:
    rt = replace(running(3), restarts={WORKER_FAILED: 3})
    s = step(rt, [worker(0), worker(1), worker(2, phase="Failed", exit_code=2), rdzv()], spec=SPEC)
    assert s.runtime.phase == FAILED
    assert {name for name, _ in s.delete_pods} >= {"job-w0", "job-w1", "job-rdzv-1"}


def test_crash_loop_breaker_trips_on_repeated_failures() -> None:
    rt = replace(running(3), recent_failures=(NOW - 10, NOW - 5))
    spec = replace(SPEC, failure_budget=100)
    s = step(rt, [worker(0), worker(1), worker(2, phase="Failed", exit_code=2), rdzv()], spec=spec)
    assert s.runtime.phase == FAILED
    assert "crash loop" in s.runtime.message


def test_disrupted_pod_counts_as_lost_not_failed() -> None:
    rt = running(3)
    s = step(rt, [worker(0), worker(1), worker(2, phase="Failed", exit_code=137, disrupted=True), rdzv()])
    assert s.runtime.restarts == {WORKER_LOST: 1}


def test_success_reported_by_a_member_completes_the_job() -> None:
    rt = running(2)
    s = step(rt, [worker(0), worker(1), rdzv()], reports([0], 1, state="succeeded"))
    assert s.runtime.phase == SUCCEEDED
    assert s.runtime.completion_time == NOW
    assert ("job-rdzv-1", "job completed") in s.delete_pods


def test_all_members_succeeded_completes_the_job() -> None:
    s = step(running(2), [worker(0, phase="Succeeded"), worker(1, phase="Succeeded"), rdzv()])
    assert s.runtime.phase == SUCCEEDED


def test_a_finished_job_gives_up_its_placement_at_once_and_keeps_its_finished_pods() -> None:
    pods = [worker(0, phase="Succeeded"), worker(1, phase="Succeeded"), rdzv()]
    done = step(running(2), pods)
    # one status write: the placement goes with the phase (what still runs counts as foreign usage until gone)
    assert (done.runtime.placement, done.runtime.members) == ((), ())
    assert done.delete_pods == (("job-rdzv-1", "job completed"),)
    # later rounds: the finished workers stay (their logs, like a Kubernetes Job's) until the job is deleted;
    # a pod still running goes
    later = step(done.runtime, [*pods[:1], worker(1, phase="Running")])
    assert later.delete_pods == (("job-w1", "job succeeded"),)
    assert later.runtime == done.runtime
    assert step(done.runtime, pods[:2]).idle


def test_pods_the_api_server_stored_count_as_seen_in_the_same_status_write() -> None:
    s = step(JobRuntime(), [], change=Change("admit", 2, add_nodes=("a", "b"), reason="fits"))
    assert not any(slot.seen for slot in s.runtime.placement) and not s.runtime.rendezvous_seen
    rt = mark_created(s.runtime, [0], rendezvous=True)
    assert [slot.seen for slot in rt.placement] == [True, False]
    assert rt.rendezvous_seen
    # slot 1 was a 409 (a pod of that name existed): created again until the watch shows it, never taken as lost
    again = step(rt, [worker(0, phase="Pending"), rdzv(phase="Pending")])
    assert [c.slot for c in again.create_workers] == [1]
    assert again.runtime.restarts == {}
    # slot 0 seen and then gone: lost, not created as if it never existed
    gone = step(rt, [worker(1, phase="Pending"), rdzv(phase="Pending")])
    assert gone.runtime.restarts.get(WORKER_LOST) == 1
    assert mark_created(rt, [0, 1], rendezvous=False) == replace(
        rt, placement=tuple(replace(slot, seen=True) for slot in rt.placement)
    )


def test_suspend_releases_workers_and_resume_requeues() -> None:
    rt = running(2)
    pods = [worker(0), worker(1), rdzv()]
    s = step(rt, pods, spec=replace(SPEC, suspend=True))
    assert s.runtime.phase == SUSPENDED
    assert s.runtime.placement == ()
    assert {x.slot for x in s.runtime.leaving} == {0, 1}
    assert ("job-rdzv-1", "no workers placed") in s.delete_pods
    resumed = step(replace(s.runtime, leaving=()), [], spec=SPEC)
    assert resumed.runtime.phase == QUEUED


def test_active_deadline_fails_the_job() -> None:
    s = step(running(2), [worker(0), worker(1), rdzv()], spec=replace(SPEC, active_deadline_s=50))
    assert s.runtime.phase == FAILED
    assert "activeDeadlineSeconds" in s.runtime.message


def test_lost_rendezvous_pod_is_replaced_and_the_generation_reopened() -> None:
    rt = running(2)
    s = step(rt, [worker(0), worker(1)], reports([0, 1], 1))
    assert s.create_rendezvous == "job-rdzv-2"
    assert s.runtime.rescale_generation == 2
    assert s.runtime.restarts == {"rendezvousLost": 1}


def test_stray_worker_pods_are_deleted() -> None:
    s = step(running(2), [worker(0), worker(1), worker(7), rdzv()], reports([0, 1], 1))
    assert ("job-w7", "not part of the job's placement") in s.delete_pods


def test_status_round_trip_keeps_the_runtime() -> None:
    rt = replace(
        running(3),
        leaving=(Leaving(9, 1_700_000_000.0),),
        restarts={WORKER_LOST: 2},
        rescales={"grow": 1},
        recent_failures=(1_700_000_001.0,),
        last_rescale_time=1_700_000_002.0,
        generation_started=1_700_000_003.0,
        message="hello",
    )
    assert from_status(to_status(rt)) == rt


def test_stop_request_drains_workers_then_succeeds() -> None:
    spec = replace(SPEC, stop_reason="pruned at step 10")
    pods = [worker(0), worker(1), rdzv()]
    s = step(running(2), pods, spec=spec)
    assert s.runtime.placement == ()
    assert {x.slot for x in s.runtime.leaving} == {0, 1}
    assert directive_for(s.runtime, 0, "uid", "e:1").action == EXIT
    assert s.runtime.phase == RUNNING  # not done while workers are still checkpointing
    done = step(replace(s.runtime, leaving=()), [], spec=spec)
    assert done.runtime.phase == SUCCEEDED
    assert done.runtime.message == "stopped: pruned at step 10"
    queued = step(JobRuntime(), [], spec=spec)
    assert queued.runtime.phase == SUCCEEDED


def test_a_failed_generation_is_retried_and_repeated_failures_trip_the_breaker() -> None:
    pods = [worker(0), worker(1), rdzv()]
    rep = {**reports([0], 1), **reports([1], 1, state="failed")}
    s = step(running(2), pods, rep)
    assert s.runtime.rescale_generation == 2
    assert s.runtime.members == (0, 1)
    assert s.runtime.phase == RESCALING
    assert "GenerationFailed" in [e.reason for e in s.events]
    assert step(s.runtime, pods, rep).runtime.rescale_generation == 2  # the old report is about generation 1
    looping = replace(running(2), recent_failures=(NOW - 20, NOW - 10))
    broken = step(looping, pods, rep)
    assert broken.runtime.phase == FAILED
    assert "crash loop" in broken.runtime.message


def test_a_rescale_reports_its_training_pause_and_a_first_start_does_not() -> None:
    rt = running(3)
    pods = [worker(0), worker(1), worker(2), rdzv()]
    shrink = step(rt, pods, reports(range(3), 1), change=Change("shrink", 2, remove_slots=(2,), reason="priority"))
    assert shrink.runtime.generation_started == NOW and shrink.pause_s is None
    resumed = {  # each launcher timed its own pause (stop -> running in the new generation)
        worker_pod_name("job", 0): ReportFacts(generation=2, state="running", time=NOW + 2.0, pause_s=2.0),
        worker_pod_name("job", 1): ReportFacts(generation=2, state="running", time=NOW + 3.5, pause_s=3.5),
    }
    done = step(shrink.runtime, pods, resumed)
    assert done.runtime.phase == RUNNING
    assert done.pause_s == 3.5
    assert done.runtime.last_rescale_pause_s == 3.5
    assert any("3.5s training pause" in e.message for e in done.events)
    assert from_status(to_status(done.runtime)).last_rescale_pause_s == 3.5
    starting = replace(running(2), phase=STARTING, generation_started=NOW - 30)
    first = step(starting, [worker(0), worker(1), rdzv()], reports([0, 1], 1))
    assert first.runtime.phase == RUNNING
    assert first.pause_s is None and first.runtime.last_rescale_pause_s is None  # a first start is no pause


def test_training_that_finishes_while_a_grow_opens_the_next_generation_completes_the_job() -> None:
    rt = running(2, gen=3)
    pods = [worker(0), worker(1), rdzv()]
    grow = step(rt, pods, reports([0, 1], 3), change=Change("grow", 4, add_nodes=("c", "d"), reason="spare"))
    opened = step(grow.runtime, [*pods, worker(2), worker(3)], reports([0, 1], 3))
    assert opened.runtime.rescale_generation == 4 and opened.runtime.members == (0, 1, 2, 3)
    # the old members finished training in generation 3 before they heard of generation 4
    late = {**reports([0, 1], 3, state="succeeded"), **reports([2, 3], 4, state="starting")}
    done = step(opened.runtime, [*pods, worker(2), worker(3)], late)
    assert done.runtime.phase == SUCCEEDED
    assert ("job-rdzv-1", "job completed") in done.delete_pods


def test_attained_service_is_banked_when_the_worker_count_changes_and_only_then() -> None:
    queued = JobRuntime()
    admitted = step(queued, [], change=Change("admit", 2, add_nodes=("a", "b"), reason="fits")).runtime
    assert (admitted.attained_s, admitted.attained_since) == (0.0, NOW)
    assert admitted.attained(NOW + 10) == 20.0  # 2 workers x 10 s, without a status write
    steady = replace(running(2), attained_s=5.0, attained_since=NOW - 10)
    assert step(steady, [worker(0), worker(1), rdzv()], reports([0, 1], 1)).runtime == steady  # nothing banked
    shrunk = step(steady, [worker(0), worker(1), rdzv()], reports([0, 1], 1),
                  change=Change("shrink", 1, remove_slots=(1,), reason="priority")).runtime  # fmt: skip
    assert (shrunk.attained_s, shrunk.attained_since) == (25.0, NOW)  # 5 + 2 workers x 10 s
    assert shrunk.attained(NOW + 4) == 29.0  # now 1 worker
    assert from_status(to_status(shrunk)).attained(NOW + 4) == 29.0
