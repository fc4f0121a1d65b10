"""The SQLite ledger's schema, as the migrations that build it (``sqlite.py`` applies them)."""

from __future__ import annotations

# Applied in order; PRAGMA user_version records how many have run.
MIGRATIONS = (
    """
    CREATE TABLE accounts (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        plan        TEXT NOT NULL,
        created_at  REAL NOT NULL
    );
    CREATE TABLE api_keys (
        id          INTEGER PRIMARY KEY,
        account_id  INTEGER NOT NULL REFERENCES accounts(id),
        name        TEXT NOT NULL,
        key_hash    BLOB NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL,
        revoked_at  REAL
    );
    CREATE TABLE usage_records (
        id                  INTEGER PRIMARY KEY,
        request_id          TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        key_id              INTEGER,
        account_id          INTEGER,
        model               TEXT,
        upstream            TEXT,
        upstream_model      TEXT,
        stream              INTEGER NOT NULL,
        status              INTEGER NOT NULL,
        outcome             TEXT NOT NULL,
        error_type          TEXT,
        started_at          REAL NOT NULL,
        duration_ms         REAL NOT NULL,
        usage_known         INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        cache_read_tokens   INTEGER NOT NULL,
        cache_write_tokens  INTEGER NOT NULL,
        reasoning_tokens    INTEGER NOT NULL,
        extra               TEXT
    );
    CREATE INDEX usage_records_account_time ON usage_records (account_id, started_at);
    CREATE INDEX usage_records_request ON usage_records (request_id);
    """,
    """
    CREATE TABLE responses (
        id          TEXT PRIMARY KEY,
        account_id  INTEGER NOT NULL,
        model       TEXT NOT NULL,
        created_at  REAL NOT NULL,
        expires_at  REAL,
        input       TEXT NOT NULL,
        response    TEXT NOT NULL
    );
    CREATE INDEX responses_expiry ON responses (expires_at);
    """,
    """
    ALTER TABLE accounts ADD COLUMN overrides TEXT;
    ALTER TABLE api_keys ADD COLUMN allow TEXT;
    """,
    """
    ALTER TABLE usage_records ADD COLUMN requested_model TEXT;
    """,
    """
    ALTER TABLE accounts ADD COLUMN balance INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE holds (
        id              INTEGER PRIMARY KEY,
        account_id      INTEGER NOT NULL REFERENCES accounts(id),
        request_id      TEXT NOT NULL,
        amount          INTEGER NOT NULL,
        cost            INTEGER NOT NULL,
        input_tokens    INTEGER NOT NULL DEFAULT 0,
        output_tokens   INTEGER NOT NULL DEFAULT 0,
        owner           TEXT NOT NULL,
        created_at      REAL NOT NULL,
        expires_at      REAL NOT NULL,
        detail          TEXT
    );
    CREATE INDEX holds_expiry ON holds (expires_at);
    CREATE INDEX holds_account ON holds (account_id);
    CREATE TABLE credit_entries (
        id              INTEGER PRIMARY KEY,
        account_id      INTEGER NOT NULL REFERENCES accounts(id),
        amount          INTEGER NOT NULL,
        bonus           INTEGER NOT NULL,
        kind            TEXT NOT NULL,
        note            TEXT,
        idempotency_key TEXT UNIQUE,
        created_at      REAL NOT NULL
    );
    CREATE INDEX credit_entries_account ON credit_entries (account_id, created_at);
    CREATE TABLE spend_5m (
        account_id  INTEGER NOT NULL,
        bucket      INTEGER NOT NULL,
        amount      INTEGER NOT NULL,
        PRIMARY KEY (account_id, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE spend_month (
        account_id  INTEGER NOT NULL,
        month       INTEGER NOT NULL,
        amount      INTEGER NOT NULL,
        PRIMARY KEY (account_id, month)
    ) WITHOUT ROWID;
    ALTER TABLE usage_records ADD COLUMN usage_source TEXT;
    ALTER TABLE usage_records ADD COLUMN cost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN unbilled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN held INTEGER;
    ALTER TABLE usage_records ADD COLUMN ttft_ms REAL;
    ALTER TABLE usage_records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE payments (
        id          TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        account_id  INTEGER REFERENCES accounts(id),
        state       TEXT NOT NULL,
        credits     INTEGER NOT NULL,
        currency    TEXT NOT NULL,
        amount      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        expires_at  REAL,
        paid        INTEGER,
        bonus       INTEGER NOT NULL DEFAULT 0,
        credited    INTEGER NOT NULL DEFAULT 0,
        external_id TEXT,
        pay_url     TEXT,
        paid_by     TEXT,
        detail      TEXT,
        details     TEXT
    );
    CREATE INDEX payments_account ON payments (account_id, created_at);
    CREATE INDEX payments_state ON payments (state, expires_at);
    CREATE TABLE payment_events (
        id          INTEGER PRIMARY KEY,
        provider    TEXT NOT NULL,
        event_id    TEXT,
        payment_id  TEXT,
        status      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT,
        received_at REAL NOT NULL,
        body        TEXT,
        UNIQUE (provider, event_id)
    );
    CREATE INDEX payment_events_payment ON payment_events (payment_id, id);
    """,
)
