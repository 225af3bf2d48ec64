-- Identity: users, roles and their permissions, sessions, API tokens.
--
-- Times are Unix seconds (REAL, UTC). Credentials are stored only as the
-- SHA-256 of the token; passwords only as argon2id hashes. Every change that
-- must reach existing credentials at once bumps users.epoch (one user) or
-- identity_state.roles_epoch (every holder of a role): the credential check
-- reads the epochs with the session or token row and rebuilds its cached
-- principal when they moved.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT,
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    epoch INTEGER NOT NULL DEFAULT 0,
    totp_secret TEXT,
    totp_pending_secret TEXT,
    -- The last 30 s step whose code was accepted: a code is used once.
    totp_last_step INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    password_changed_at REAL NOT NULL
);

CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    staff INTEGER NOT NULL DEFAULT 0 CHECK (staff IN (0, 1)),
    -- Built-in roles take their permissions from the code, not from
    -- role_permissions, so that a new permission reaches admin on upgrade.
    builtin INTEGER NOT NULL DEFAULT 0 CHECK (builtin IN (0, 1)),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role, permission)
) WITHOUT ROWID;

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    PRIMARY KEY (user_id, role)
) WITHOUT ROWID;

CREATE INDEX user_roles_by_role ON user_roles (role);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    client_addr TEXT
);

CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    -- JSON array of permission strings, a subset of the creator's.
    permissions TEXT NOT NULL,
    staff INTEGER NOT NULL DEFAULT 0 CHECK (staff IN (0, 1)),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_used_at REAL
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

CREATE TABLE identity_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO identity_state (key, value) VALUES ('roles_epoch', 0);

INSERT INTO roles (name, description, staff, builtin, created_at, updated_at)
VALUES
    ('admin', 'Every permission; sees and manages everything.', 1, 1, 0, 0),
    ('user', 'Deploys and controls their own containers and files.', 0, 1, 0, 0);
