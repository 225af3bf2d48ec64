-- The audit log: who did what, to what, with which outcome.
--
-- No foreign key to users: the trail must outlive the accounts it names, so
-- actor (the username at the time) and actor_id are copied, not referenced.
-- AUTOINCREMENT so that ids are never reused after pruning, which keeps
-- paging by "before_id" stable. ts is UTC ISO-8601 with a fixed width
-- (microseconds, "+00:00"), so text order is time order.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          TEXT    NOT NULL,
    actor       TEXT,
    actor_id    INTEGER,
    credential  TEXT,
    client_addr TEXT,
    request_id  TEXT,
    face        TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT,
    outcome     TEXT    NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_ts ON audit_log (ts);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
