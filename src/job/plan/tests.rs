use super::*;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn status(phase: Phase, attempts: i32, due: Option<i64>) -> PendingJobStatus {
    PendingJobStatus {
        phase,
        attempts,
        next_retry_time: due.map(|s| MicroTime(at(s))),
        ..PendingJobStatus::default()
    }
}

fn finished(phase: Phase, done: i64) -> PendingJobStatus {
    PendingJobStatus {
        completion_time: Some(Time(at(done))),
        ..status(phase, 1, None)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn schedule_table() {
    let cases = [
        (status(Phase::Pending, 0, None), Decision::Attempt),
        (status(Phase::Retrying, 1, Some(10)), Decision::Wait(secs(10))),
        (status(Phase::Retrying, 1, Some(0)), Decision::Attempt),
        (status(Phase::Retrying, 1, Some(-3)), Decision::Attempt),
        (finished(Phase::Succeeded, -5), Decision::Idle),
        (finished(Phase::Failed, -5), Decision::Idle),
    ];
    for (status, want) in cases {
        assert_eq!(decide(&Facts::plain(&status), at(0)), want, "{status:?}");
    }
}

#[test]
fn finished_jobs_are_deleted_when_their_ttl_is_up() {
    let done = finished(Phase::Succeeded, -5);
    let with = |ttl: u64| Facts {
        ttl_after_finished: Some(secs(ttl)),
        ..Facts::plain(&done)
    };
    assert_eq!(decide(&with(2), at(0)), Decision::Delete);
    assert_eq!(decide(&with(5), at(0)), Decision::Delete);
    assert_eq!(decide(&with(8), at(0)), Decision::Wait(secs(3)));
    let running = status(Phase::Retrying, 1, Some(10));
    let unfinished = Facts {
        ttl_after_finished: Some(secs(0)),
        ..Facts::plain(&running)
    };
    assert_eq!(
        decide(&unfinished, at(0)),
        Decision::Wait(secs(10)),
        "only finished jobs expire"
    );
}

#[test]
fn a_new_retry_value_redrives_once_and_never_a_success() {
    let failed = finished(Phase::Failed, -5);
    let asked = |status| Facts {
        retry_request: Some("v1"),
        ..Facts::plain(status)
    };
    assert_eq!(
        decide(&asked(&failed), at(0)),
        Decision::Amend(Amend::Redrive("v1".into()))
    );
    let redriven = amend(&failed, &Amend::Redrive("v1".into()), at(0));
    assert_eq!(
        (redriven.phase, redriven.completion_time.clone()),
        (Phase::Retrying, None)
    );
    assert_eq!(redriven.redrive.as_ref().map(|r| r.attempts), Some(1));
    assert!(redriven.conditions.iter().all(|c| c.type_ != FAILED));
    assert_eq!(
        decide(&asked(&redriven), at(0)),
        Decision::Attempt,
        "the same value acts once"
    );

    let waiting = status(Phase::Retrying, 3, Some(100));
    let hastened = amend(&waiting, &Amend::Redrive("v1".into()), at(0));
    assert_eq!(
        decide(&asked(&hastened), at(0)),
        Decision::Attempt,
        "a waiting job tries now"
    );
    let succeeded = finished(Phase::Succeeded, -5);
    assert_eq!(decide(&asked(&succeeded), at(0)), Decision::Idle);
    let empty = Facts {
        retry_request: Some(""),
        ..Facts::plain(&failed)
    };
    assert_eq!(decide(&empty, at(0)), Decision::Idle);
}

#[test]
fn max_attempts_counts_from_the_redrive() {
    let policy = crate::api::RetryPolicy {
        max_attempts: Some(2),
        ..Default::default()
    };
    let failed = finished(Phase::Failed, -5);
    let mut status = amend(
        &PendingJobStatus { attempts: 2, ..failed },
        &Amend::Redrive("x".into()),
        at(0),
    );
    let unavailable = crate::delivery::outcome::Outcome::Retryable {
        code: Some(503),
        error: "down".into(),
        retry_after: None,
    };
    let attempt = |second| crate::job::transitions::Attempt {
        policy: &policy,
        generation: Some(1),
        started: at(second),
        finished: at(second),
        jitter_unit: 0.0,
    };
    status = crate::job::transitions::record(&status, &attempt(1), &unavailable);
    assert_eq!((status.attempts, status.phase), (3, Phase::Retrying));
    status = crate::job::transitions::record(&status, &attempt(10), &unavailable);
    assert_eq!((status.attempts, status.phase), (4, Phase::Failed));
}

#[test]
fn suspend_and_resume_keep_the_schedule_and_the_deadline_fair() {
    let waiting = status(Phase::Retrying, 2, Some(10));
    let suspended = Facts {
        suspend: true,
        ..Facts::plain(&waiting)
    };
    assert_eq!(decide(&suspended, at(0)), Decision::Amend(Amend::Suspend));
    let paused = amend(&waiting, &Amend::Suspend, at(0));
    assert_eq!(paused.phase, Phase::Suspended);
    assert_eq!(paused.next_retry_time, waiting.next_retry_time, "the schedule is kept");
    assert_eq!(
        decide(
            &Facts {
                suspend: true,
                ..Facts::plain(&paused)
            },
            at(50)
        ),
        Decision::Idle
    );
    assert_eq!(decide(&Facts::plain(&paused), at(30)), Decision::Amend(Amend::Resume));
    let resumed = amend(&paused, &Amend::Resume, at(30));
    assert_eq!((resumed.phase, resumed.suspended_seconds), (Phase::Retrying, 30));
    assert_eq!(decide(&Facts::plain(&resumed), at(30)), Decision::Attempt);

    // 30 s suspended: a 40 s deadline from creation at 0 ends at 70, not 40.
    let deadline = |status| Facts {
        max_retry_duration: Some(secs(40)),
        created: at(0),
        ..Facts::plain(status)
    };
    let later = PendingJobStatus {
        next_retry_time: Some(MicroTime(at(100))),
        ..resumed
    };
    assert_eq!(decide(&deadline(&later), at(60)), Decision::Wait(secs(10)));
    assert_eq!(
        decide(&deadline(&later), at(70)),
        Decision::Amend(Amend::DeadlineExceeded)
    );
}

#[test]
fn the_deadline_fails_a_job_only_after_a_failed_attempt() {
    let facts = |status| Facts {
        max_retry_duration: Some(secs(5)),
        created: at(0),
        ..Facts::plain(status)
    };
    let never_tried = status(Phase::Pending, 0, None);
    assert_eq!(decide(&facts(&never_tried), at(9)), Decision::Attempt);
    let retrying = status(Phase::Retrying, 3, Some(6));
    assert_eq!(
        decide(&facts(&retrying), at(4)),
        Decision::Wait(secs(1)),
        "wakes at the deadline"
    );
    assert_eq!(
        decide(&facts(&retrying), at(5)),
        Decision::Amend(Amend::DeadlineExceeded)
    );
    let failed = amend(&retrying, &Amend::DeadlineExceeded, at(5));
    assert_eq!(failed.phase, Phase::Failed);
    let reason = failed
        .conditions
        .iter()
        .find(|c| c.type_ == FAILED)
        .map(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn not_before_schedules_the_first_attempt_and_shows_it() {
    let pending = status(Phase::Pending, 0, None);
    let facts = |status| Facts {
        not_before: Some(at(3)),
        ..Facts::plain(status)
    };
    assert_eq!(decide(&facts(&pending), at(0)), Decision::Amend(Amend::Schedule(at(3))));
    let shown = amend(&pending, &Amend::Schedule(at(3)), at(0));
    assert_eq!(shown.next_retry_time, Some(MicroTime(at(3))));
    assert_eq!(decide(&facts(&shown), at(1)), Decision::Wait(secs(2)));
    assert_eq!(decide(&facts(&shown), at(3)), Decision::Attempt);
    assert_eq!(
        decide(&facts(&pending), at(5)),
        Decision::Attempt,
        "a past time holds nothing"
    );
    // A time finer than status shows is shown rounded up, once.
    let fine = Facts {
        not_before: Some(at(3) + SignedDuration::from_nanos(1_500)),
        ..Facts::plain(&pending)
    };
    let up = at(3) + SignedDuration::from_micros(2);
    assert_eq!(decide(&fine, at(0)), Decision::Amend(Amend::Schedule(up)));
    let shown = amend(&pending, &Amend::Schedule(up), at(0));
    let fine = Facts { status: &shown, ..fine };
    assert_eq!(
        decide(&fine, at(0)),
        Decision::Wait(secs(3) + Duration::from_nanos(1_500))
    );
    assert_eq!(
        waits(&fine, at(0)),
        Some(Some(at(3) + SignedDuration::from_nanos(1_500)))
    );
}

#[test]
fn a_failed_job_sends_its_dead_letter_before_its_ttl_runs() {
    let failed = finished(Phase::Failed, -100);
    let facts = |status| Facts {
        dead_letter: true,
        ttl_after_finished: Some(secs(1)),
        ..Facts::plain(status)
    };
    assert_eq!(decide(&facts(&failed), at(0)), Decision::DeadLetter);
    let down = crate::delivery::outcome::Outcome::Retryable {
        code: None,
        error: "refused".into(),
        retry_after: None,
    };
    let retried = crate::job::dead_letter::record::recorded(&failed, &down, at(0));
    assert_eq!(decide(&facts(&retried), at(1)), Decision::Wait(secs(1)));
    assert_eq!(decide(&facts(&retried), at(2)), Decision::DeadLetter);
    let sent = crate::job::dead_letter::record::recorded(
        &retried,
        &crate::delivery::outcome::Outcome::Delivered { code: 200 },
        at(2),
    );
    assert_eq!(decide(&facts(&sent), at(2)), Decision::Delete, "then the TTL");
    let succeeded = finished(Phase::Succeeded, -100);
    assert_eq!(
        decide(
            &Facts {
                ttl_after_finished: None,
                ..facts(&succeeded)
            },
            at(0)
        ),
        Decision::Idle,
        "only failures are dead-lettered"
    );
}

#[test]
fn only_finished_jobs_with_nothing_owed_are_settled() {
    let done = finished(Phase::Succeeded, -5);
    let failed = finished(Phase::Failed, -5);
    let running = status(Phase::Retrying, 1, Some(10));
    let plain = Facts::plain(&done);
    let ttl = |status, ttl: u64| Facts {
        ttl_after_finished: Some(secs(ttl)),
        ..Facts::plain(status)
    };
    let with_dead_letter = Facts {
        dead_letter: true,
        ..Facts::plain(&failed)
    };
    let redriven = Facts {
        retry_request: Some("v1"),
        ..Facts::plain(&failed)
    };
    let mut sent = failed.clone();
    sent.dead_letter = Some(Box::new(crate::api::DeadLetterStatus {
        delivered: true,
        ..Default::default()
    }));
    let delivered = Facts {
        dead_letter: true,
        ..Facts::plain(&sent)
    };
    let table: [(&str, Facts<'_>, Option<Option<Timestamp>>); 8] = [
        ("kept for good", plain, Some(None)),
        ("deleted at its ttl", ttl(&done, 8), Some(Some(at(3)))),
        ("ttl up: the controller deletes it", ttl(&done, 2), None),
        ("not finished", Facts::plain(&running), None),
        ("a dead letter owed", with_dead_letter, None),
        ("its dead letter delivered", delivered, Some(None)),
        ("a redrive to act on", redriven, None),
        ("a failed job kept for good", Facts::plain(&failed), Some(None)),
    ];
    for (what, facts, expected) in table {
        assert_eq!(settled(&facts, at(0)), expected, "{what}");
    }
}

#[test]
fn only_unfinished_jobs_waiting_on_time_or_a_change_wait_outside() {
    let retrying = status(Phase::Retrying, 1, Some(600));
    let due = status(Phase::Retrying, 1, Some(-1));
    let pending = status(Phase::Pending, 0, None);
    let scheduled = PendingJobStatus {
        next_retry_time: Some(MicroTime(at(3600))),
        ..pending.clone()
    };
    let suspended = status(Phase::Suspended, 1, Some(600));
    let done = finished(Phase::Succeeded, -5);
    let later = Facts {
        not_before: Some(at(3600)),
        ..Facts::plain(&scheduled)
    };
    let not_yet_shown = Facts {
        not_before: Some(at(3600)),
        ..Facts::plain(&pending)
    };
    let redriven = Facts {
        retry_request: Some("v1"),
        ..Facts::plain(&retrying)
    };
    let resumed = Facts::plain(&suspended);
    let held = Facts {
        suspend: true,
        ..Facts::plain(&suspended)
    };
    let past_deadline = Facts {
        max_retry_duration: Some(secs(60)),
        created: at(-120),
        ..Facts::plain(&retrying)
    };
    let table: [(&str, Facts<'_>, Option<Option<Timestamp>>); 9] = [
        ("backing off", Facts::plain(&retrying), Some(Some(at(600)))),
        ("scheduled and shown", later, Some(Some(at(3600)))),
        ("suspended", held, Some(None)),
        ("due now", Facts::plain(&due), None),
        ("its schedule still to be shown", not_yet_shown, None),
        ("a redrive to act on", redriven, None),
        ("to be resumed", resumed, None),
        ("its deadline passed", past_deadline, None),
        ("finished", Facts::plain(&done), None),
    ];
    for (what, facts, expected) in table {
        assert_eq!(waits(&facts, at(0)), expected, "{what}");
    }
}
