"""A chaos harness: the engine's real processes against a sandbox CRM, under a nemesis, checked.

``python -m bench.chaos --crm salesforce --seed 1 --duration 60`` serves a seeded sandbox from
its own process and, for ``--duration`` seconds:

- runs the engine's own processes (``python -m cli -c <config> sync|push|sweep|daemon``), at most
  one puller (sync, sweep or a daemon) and one pusher (push or that daemon) at a time, and kills
  ``--kills`` of them at random moments (SIGKILL, one in five SIGTERM);
- injects the sandbox's faults through its admin path: 5xx (and 429) bursts, dropped responses
  (the CRM did the work, the answer is lost), expired sessions, added latency, and on Salesforce
  row locks (``UNABLE_TO_LOCK_ROW``) on records the portal just edited;
- changes the CRM as its own users would: updates (one field, or the same field twice within a
  second), creates, deletes, undeletes, merges, hard deletes, many records put on one
  modification stamp, and edits of the very records and fields the portal is editing, some in
  the same second as the portal's edit;
- makes portal edits through the embedded API (``Mirror.open(config).as_partner(partner,
  user)``): updates of one text field, creates and deletes, each writing a value no other edit
  writes (a token), and logs every edit the mirror accepted.

Then it quiesces (faults off; a sync, then a push and a sync until no portal edit is left open
or nothing moves any more, at most six rounds; then a sweep) and checks. The choice of every
action comes from ``--seed``; when each happens depends on timing (process start-up, the
machine's load), so two runs of one seed differ in detail and a failure a seed shows is likely,
not certain, to show again.

What is counted (each must be 0):

Records, per mirrored object, the sandbox's own records (its ``dump`` control) against the
mirror's table. A mirror row *stands for* a CRM record when its key is the record's id, or when
it is a portal create's row still under its ``local-...`` id and carries that create's token,
which the CRM record also carries.

- **lost**: a live CRM record no live mirror row stands for (absent, or marked deleted);
- **ghost**: a live mirror row standing for no live CRM record (deleted, merged away, deleted for
  good, or a create that never reached the CRM);
- **stale**: a live CRM record whose only row still has its local id, or whose row differs from
  it in a field's value (every field the mirror keeps, compared as the mirror types it); and a
  merged-away record the mirror knew whose ``mirror_idmap`` entry names neither its survivor
  nor a record that survivor was merged into later (when the last of them is live);
- **duplicated**: a live CRM record that two or more live mirror rows stand for.

Edits: every accepted portal edit against the CRM's write log (the sandbox's ``write_log``: each
committed write, ``api`` when the engine made it). An edit is *applied* when an ``api`` write
carries its token (a delete: an ``api`` delete of its record). An edit not applied is
*accounted for* when a conflict in ``mirror_conflicts`` holds its value, when its outbox entry
failed with the CRM's (or the engine's) message, or when a later accepted edit of the same
field of the same record overtook it before it was sent (that edit is judged in its turn);
these are reported, not counted.

- **lost**: an edit neither applied nor accounted for (its outbox entry still pending, blocked,
  sending or superseded after quiescence, or gone);
- **stuck**: an edit applied whose outbox entry is still open after quiescence (pending,
  sending, blocked, or done and never confirmed by its echo) with no conflict holding it, or a
  create applied whose local id ``mirror_idmap`` does not map to the record it made (a partner
  who kept the id ``create()`` returned can no longer reach the record);
- **duplicated**: a create applied as two or more CRM records, or an edit's value written again
  after another value of its field had been written to the record in between (the retry undid a
  newer change);
- **reordered**: an edit first written before the last write of an earlier edit of the same
  record (the record's edits reached the CRM out of the order they were made).

CRM changes: the write log against itself.

- **overwritten**: a field the CRM's own users changed after a portal edit of it was accepted,
  then overwritten by the engine's write of that edit with no conflict recorded (the three-way
  merge never saw the CRM's change).

Also reported, not counted: the edits applied, in a conflict and refused (by error code), the
outbox entries still open and the runs left marked ``running`` after quiescence. The exit status
is 1 when any count is not 0. Results go to ``bench/results/chaos-<time>.json``.
"""
