-- The registry schema of the release before scopes (schema version 1), as its
-- signer created it. The migration test builds a registry from this file.
CREATE TABLE caches (
    id           INTEGER PRIMARY KEY,
    owner        TEXT NOT NULL,
    key          TEXT NOT NULL,
    ulid         TEXT NOT NULL UNIQUE,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    UNIQUE (owner, key)
);
CREATE INDEX caches_by_owner_last_used ON caches (owner, last_used_at);
CREATE INDEX caches_by_last_used ON caches (last_used_at);

CREATE TABLE uploads (
    ulid             TEXT PRIMARY KEY,
    owner            TEXT NOT NULL,
    key              TEXT NOT NULL,
    s3_upload_id     TEXT,
    state            TEXT NOT NULL
        CHECK (state IN ('creating', 'uploading', 'finished', 'completed', 'aborted')),
    part_size        INTEGER NOT NULL,
    size             INTEGER,
    sha256           TEXT,
    parts_json       TEXT,
    lease_expires_at INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    needs_abort      INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX uploads_one_live_per_key ON uploads (owner, key)
    WHERE state IN ('creating', 'uploading', 'finished');
CREATE INDEX uploads_by_state ON uploads (state, next_attempt_at);
PRAGMA user_version = 1;
