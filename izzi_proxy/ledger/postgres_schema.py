"""The PostgreSQL ledger's schema, as the migrations that build it (``postgres.py`` applies
them under an advisory lock), its functions among them."""

from __future__ import annotations

# Applied in order; izzi_schema records how many have run.
MIGRATIONS = (
    """
    CREATE TABLE accounts (
        id          BIGSERIAL PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        plan        TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        overrides   TEXT
    );
    CREATE TABLE api_keys (
        id          BIGSERIAL PRIMARY KEY,
        account_id  BIGINT NOT NULL REFERENCES accounts(id),
        name        TEXT NOT NULL,
        key_hash    BYTEA NOT NULL UNIQUE,
        prefix      TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION,
        revoked_at  DOUBLE PRECISION,
        allow       TEXT
    );
    CREATE TABLE usage_records (
        id                  BIGSERIAL PRIMARY KEY,
        request_id          TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        key_id              BIGINT,
        account_id          BIGINT,
        model               TEXT,
        upstream            TEXT,
        upstream_model      TEXT,
        requested_model     TEXT,
        stream              BOOLEAN NOT NULL,
        status              INTEGER NOT NULL,
        outcome             TEXT NOT NULL,
        error_type          TEXT,
        started_at          DOUBLE PRECISION NOT NULL,
        duration_ms         DOUBLE PRECISION NOT NULL,
        usage_known         BOOLEAN NOT NULL,
        input_tokens        BIGINT NOT NULL,
        output_tokens       BIGINT NOT NULL,
        cache_read_tokens   BIGINT NOT NULL,
        cache_write_tokens  BIGINT NOT NULL,
        reasoning_tokens    BIGINT NOT NULL,
        extra               TEXT
    );
    CREATE INDEX usage_records_account_time ON usage_records (account_id, started_at);
    CREATE INDEX usage_records_request ON usage_records (request_id);
    CREATE TABLE responses (
        id          TEXT PRIMARY KEY,
        account_id  BIGINT NOT NULL,
        model       TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION,
        input       TEXT NOT NULL,
        response    TEXT NOT NULL
    );
    CREATE INDEX responses_expiry ON responses (expires_at);
    """,
    """
    ALTER TABLE accounts ADD COLUMN balance BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE accounts ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE holds (
        id              BIGSERIAL PRIMARY KEY,
        account_id      BIGINT NOT NULL REFERENCES accounts(id),
        request_id      TEXT NOT NULL,
        amount          BIGINT NOT NULL,
        cost            BIGINT NOT NULL,
        input_tokens    BIGINT NOT NULL DEFAULT 0,
        output_tokens   BIGINT NOT NULL DEFAULT 0,
        owner           TEXT NOT NULL,
        created_at      DOUBLE PRECISION NOT NULL,
        expires_at      DOUBLE PRECISION NOT NULL,
        detail          TEXT
    );
    CREATE INDEX holds_expiry ON holds (expires_at);
    CREATE INDEX holds_account ON holds (account_id);
    CREATE INDEX holds_owner ON holds (owner);
    CREATE TABLE credit_entries (
        id              BIGSERIAL PRIMARY KEY,
        account_id      BIGINT NOT NULL REFERENCES accounts(id),
        amount          BIGINT NOT NULL,
        bonus           BIGINT NOT NULL,
        kind            TEXT NOT NULL,
        note            TEXT,
        idempotency_key TEXT UNIQUE,
        created_at      DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX credit_entries_account ON credit_entries (account_id, created_at);
    CREATE TABLE spend_5m (
        account_id  BIGINT NOT NULL,
        bucket      BIGINT NOT NULL,
        amount      BIGINT NOT NULL,
        PRIMARY KEY (account_id, bucket)
    );
    CREATE TABLE spend_month (
        account_id  BIGINT NOT NULL,
        month       INTEGER NOT NULL,
        amount      BIGINT NOT NULL,
        PRIMARY KEY (account_id, month)
    );
    ALTER TABLE usage_records ADD COLUMN usage_source TEXT;
    ALTER TABLE usage_records ADD COLUMN cost BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN unbilled BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN held BIGINT;
    ALTER TABLE usage_records ADD COLUMN ttft_ms DOUBLE PRECISION;
    ALTER TABLE usage_records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

    -- How much more an account may hold: its balance less its holds, within the window's
    -- and the month's limits (NULL: none). Called with the account's row locked, so the
    -- spend it reads is current: every settlement locks that row too.
    CREATE FUNCTION izzi_room(p_account BIGINT, p_balance BIGINT, p_held BIGINT,
                              p_window_limit BIGINT, p_since BIGINT, p_month_limit BIGINT, p_month INTEGER,
                              OUT o_room BIGINT, OUT o_reason TEXT, OUT o_window BIGINT, OUT o_month BIGINT)
    LANGUAGE plpgsql AS $fn$
    BEGIN
        o_room := p_balance - p_held; o_reason := 'balance'; o_window := 0; o_month := 0;
        IF p_window_limit IS NOT NULL THEN
            SELECT COALESCE(SUM(amount), 0) INTO o_window FROM spend_5m
             WHERE account_id = p_account AND bucket >= p_since;
            IF p_window_limit - o_window - p_held < o_room THEN
                o_room := p_window_limit - o_window - p_held; o_reason := 'quota';
            END IF;
        END IF;
        IF p_month_limit IS NOT NULL THEN
            SELECT COALESCE(MAX(amount), 0) INTO o_month FROM spend_month
             WHERE account_id = p_account AND month = p_month;
            IF p_month_limit - o_month - p_held < o_room THEN
                o_room := p_month_limit - o_month - p_held; o_reason := 'budget';
            END IF;
        END IF;
    END $fn$;

    CREATE FUNCTION izzi_hold(p_account BIGINT, p_request TEXT, p_amount BIGINT, p_cost BIGINT, p_owner TEXT,
                              p_now DOUBLE PRECISION, p_expires DOUBLE PRECISION, p_detail TEXT,
                              p_window_limit BIGINT, p_since BIGINT, p_month_limit BIGINT, p_month INTEGER,
                              OUT o_hold BIGINT, OUT o_reason TEXT, OUT o_balance BIGINT, OUT o_held BIGINT,
                              OUT o_window BIGINT, OUT o_month BIGINT)
    LANGUAGE plpgsql AS $fn$
    DECLARE room BIGINT;
    BEGIN
        SELECT balance, held INTO o_balance, o_held FROM accounts WHERE id = p_account FOR UPDATE;
        IF NOT FOUND THEN
            o_reason := 'account'; o_balance := 0; o_held := 0; o_window := 0; o_month := 0; RETURN;
        END IF;
        SELECT * INTO room, o_reason, o_window, o_month
          FROM izzi_room(p_account, o_balance, o_held, p_window_limit, p_since, p_month_limit, p_month);
        IF room < p_amount THEN RETURN; END IF;
        o_reason := NULL;
        UPDATE accounts SET held = held + p_amount WHERE id = p_account;
        o_held := o_held + p_amount;
        INSERT INTO holds (account_id, request_id, amount, cost, owner, created_at, expires_at, detail)
             VALUES (p_account, p_request, p_amount, p_cost, p_owner, p_now, p_expires, p_detail)
          RETURNING id INTO o_hold;
    END $fn$;

    CREATE FUNCTION izzi_extend(p_hold BIGINT, p_want BIGINT, p_need BIGINT,
                                p_window_limit BIGINT, p_since BIGINT, p_month_limit BIGINT, p_month INTEGER)
    RETURNS BIGINT LANGUAGE plpgsql AS $fn$
    DECLARE acc BIGINT; bal BIGINT; hld BIGINT; room BIGINT; granted BIGINT;
    BEGIN
        SELECT account_id INTO acc FROM holds WHERE id = p_hold;
        IF NOT FOUND THEN RETURN 0; END IF;
        SELECT balance, held INTO bal, hld FROM accounts WHERE id = acc FOR UPDATE;
        SELECT o_room INTO room FROM izzi_room(acc, bal, hld, p_window_limit, p_since, p_month_limit, p_month);
        granted := LEAST(p_want, room);
        IF granted < p_need OR granted <= 0 THEN RETURN 0; END IF;
        UPDATE holds SET amount = amount + granted WHERE id = p_hold;
        IF NOT FOUND THEN RETURN 0; END IF;
        UPDATE accounts SET held = held + granted WHERE id = acc;
        RETURN granted;
    END $fn$;

    -- Charge and release a hold: never more than the balance less the account's other
    -- holds. The account's row is locked before the hold's, as everywhere.
    CREATE FUNCTION izzi_settle(p_hold BIGINT, p_cost BIGINT, p_bucket BIGINT, p_month INTEGER,
                                OUT o_found BOOLEAN, OUT o_charged BIGINT, OUT o_balance BIGINT)
    LANGUAGE plpgsql AS $fn$
    DECLARE acc BIGINT; amt BIGINT; hld BIGINT;
    BEGIN
        o_found := false; o_charged := 0;
        SELECT account_id INTO acc FROM holds WHERE id = p_hold;
        IF NOT FOUND THEN RETURN; END IF;
        SELECT balance, held INTO o_balance, hld FROM accounts WHERE id = acc FOR UPDATE;
        DELETE FROM holds WHERE id = p_hold RETURNING amount INTO amt;
        IF NOT FOUND THEN RETURN; END IF;
        o_found := true;
        o_charged := LEAST(p_cost, GREATEST(0, o_balance - (hld - amt)));
        UPDATE accounts SET balance = balance - o_charged, held = held - amt WHERE id = acc;
        o_balance := o_balance - o_charged;
        IF o_charged > 0 THEN
            INSERT INTO spend_5m (account_id, bucket, amount) VALUES (acc, p_bucket, o_charged)
                ON CONFLICT (account_id, bucket) DO UPDATE SET amount = spend_5m.amount + EXCLUDED.amount;
            INSERT INTO spend_month (account_id, month, amount) VALUES (acc, p_month, o_charged)
                ON CONFLICT (account_id, month) DO UPDATE SET amount = spend_month.amount + EXCLUDED.amount;
        END IF;
    END $fn$;
    """,
    """
    CREATE TABLE payments (
        id          TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        account_id  BIGINT REFERENCES accounts(id),
        state       TEXT NOT NULL,
        credits     BIGINT NOT NULL,
        currency    TEXT NOT NULL,
        amount      TEXT NOT NULL,
        created_at  DOUBLE PRECISION NOT NULL,
        updated_at  DOUBLE PRECISION NOT NULL,
        expires_at  DOUBLE PRECISION,
        paid        BIGINT,
        bonus       BIGINT NOT NULL DEFAULT 0,
        credited    BIGINT NOT NULL DEFAULT 0,
        external_id TEXT,
        pay_url     TEXT,
        paid_by     TEXT,
        detail      TEXT,
        details     TEXT
    );
    CREATE INDEX payments_account ON payments (account_id, created_at);
    CREATE INDEX payments_state ON payments (state, expires_at);
    CREATE TABLE payment_events (
        id          BIGSERIAL PRIMARY KEY,
        provider    TEXT NOT NULL,
        event_id    TEXT,
        payment_id  TEXT,
        status      TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        detail      TEXT,
        received_at DOUBLE PRECISION NOT NULL,
        body        TEXT,
        UNIQUE (provider, event_id)
    );
    CREATE INDEX payment_events_payment ON payment_events (payment_id, id);
    """,
)
