-- synth queue schema, version 7: the contract curators write SQL against.
-- Every statement is idempotent; upgrades of older files live in queue.py (MIGRATIONS).
-- Column names are public API: change them only with a migration and a README note.

CREATE TABLE IF NOT EXISTS repos (
    repo            VARCHAR PRIMARY KEY,      -- owner/name
    owner           VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    stars           INTEGER,
    language        VARCHAR,
    license         VARCHAR,                  -- SPDX id when known
    default_branch  VARCHAR,
    archived        BOOLEAN DEFAULT false,
    fork            BOOLEAN DEFAULT false,
    source          VARCHAR NOT NULL,         -- git | github | demo
    first_seen_at   TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS pull_requests (
    repo            VARCHAR NOT NULL,
    number          INTEGER NOT NULL,
    title           VARCHAR NOT NULL,
    body            VARCHAR NOT NULL,
    author          VARCHAR,
    author_is_bot   BOOLEAN DEFAULT false,
    merged_at       TIMESTAMP,
    base_sha        VARCHAR,
    merge_sha       VARCHAR,
    head_sha        VARCHAR,
    url             VARCHAR,
    labels          VARCHAR[],
    linked_issues   JSON,                     -- [{"number", "title", "body"}]
    additions       INTEGER,
    deletions       INTEGER,
    changed_files   INTEGER,
    source          VARCHAR NOT NULL,
    first_seen_at   TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    head_ref        VARCHAR,                  -- the PR's branch, when the source knows it
    base_ref        VARCHAR,                  -- the branch it was merged into (another PR's: stacked)
    PRIMARY KEY (repo, number)
);

CREATE TABLE IF NOT EXISTS pr_files (
    repo            VARCHAR NOT NULL,
    number          INTEGER NOT NULL,
    path            VARCHAR NOT NULL,
    old_path        VARCHAR,
    status          VARCHAR NOT NULL,         -- added | modified | deleted | renamed | copied | type_changed
    additions       INTEGER NOT NULL,
    deletions       INTEGER NOT NULL,
    is_binary       BOOLEAN DEFAULT false,
    patch           VARCHAR,                  -- NULL: binary, not fetched, or too large to keep
    patch_bytes     BIGINT DEFAULT 0,         -- size of the whole patch at the source
    patch_truncated BOOLEAN DEFAULT false,
    undecodable     BOOLEAN DEFAULT false,    -- patch was not UTF-8
    old_mode        VARCHAR,                  -- git file modes (100644, 100755, 120000) when known
    new_mode        VARCHAR
    -- (repo, number, path) is unique: a PR's files are replaced whole on every write. No
    -- index: keeping one costs bulk ingest more than it saves any query here.
);

-- One row per (PR, filter version): re-running the same rules is idempotent, a rule change
-- (a new version) adds a row and candidates shows the latest.
CREATE TABLE IF NOT EXISTS decisions (
    repo            VARCHAR NOT NULL,
    number          INTEGER NOT NULL,
    filter_version  VARCHAR NOT NULL,
    kept            BOOLEAN NOT NULL,
    reasons         VARCHAR[] NOT NULL,
    metrics         JSON,
    decided_at      TIMESTAMP NOT NULL,
    run_id          VARCHAR,
    PRIMARY KEY (repo, number, filter_version)
);

CREATE TABLE IF NOT EXISTS tasks (
    task_id         VARCHAR PRIMARY KEY,      -- hash of (repo, number, prompt_version, rewriter, model)
    repo            VARCHAR NOT NULL,
    number          INTEGER NOT NULL,
    title           VARCHAR NOT NULL,
    category        VARCHAR NOT NULL,
    background      VARCHAR NOT NULL,
    query           VARCHAR NOT NULL,
    subtasks        JSON NOT NULL,            -- [{"title","goal","constraints","deliverables","acceptance_criteria"}]
    modified_files  VARCHAR[],
    related_files   VARCHAR[],
    difficulty      VARCHAR NOT NULL,
    flags           VARCHAR[],
    confidence      DOUBLE,
    rewriter        VARCHAR NOT NULL,         -- template | llm
    model           VARCHAR,                  -- NULL for the template rewriter
    prompt_version  VARCHAR NOT NULL,
    status          VARCHAR NOT NULL DEFAULT 'pending',  -- pending | approved | rejected | needs_edit | skipped
    judge_score     DOUBLE,
    judge           JSON,
    prompt_tokens   INTEGER DEFAULT 0,
    completion_tokens INTEGER DEFAULT 0,
    cost_usd        DOUBLE DEFAULT 0,
    revision        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    run_id          VARCHAR,
    dup_of          VARCHAR,                  -- task_id of a near-duplicate twin (the older one)
    dup_kind        VARCHAR,                  -- query | patch: what was near-identical
    dup_similarity  DOUBLE,                   -- estimated Jaccard similarity with the twin
    pr_url          VARCHAR,                  -- the PR's URL (copied, so review_queue needs no join)
    kind            VARCHAR DEFAULT 'pr',     -- pr | chain (a series of related PRs, see chains)
    members         INTEGER[],                -- the task's PRs in merge order (number is the first)
    chain_id        VARCHAR,                  -- the chain of a chain task
    patch           VARCHAR,                  -- the reference change to non-test files (git diff at the base)
    test_patch      VARCHAR,                  -- the reference change to test files
    tests_added     VARCHAR[],                -- tests the change adds or modifies (path::name)
    applicable      BOOLEAN,                  -- patch and test_patch apply at the base (false: see apply_issues)
    apply_issues    VARCHAR[],                -- binary_files, patch_truncated, patches_missing, ...
    stages          JSON,                     -- a chain: per PR {number, base_commit, merge_commit, patch, test_patch, tests_added, applicable, issues}
    pr_dropped      BOOLEAN DEFAULT false     -- a PR task whose PR the latest decision drops (rules changed since it was written)
);

-- Series of related merged PRs (chains.py, rules in filters/ [chains]), replaced per
-- repository each time its crawl finds new PRs. Kept chains become chain tasks.
CREATE TABLE IF NOT EXISTS chains (
    chain_id        VARCHAR PRIMARY KEY,      -- hash of (repo, members)
    repo            VARCHAR NOT NULL,
    members         INTEGER[] NOT NULL,       -- PR numbers in merge order
    links           JSON NOT NULL,            -- [{"earlier","later","kind","detail"}]: why they were linked
    link_kinds      VARCHAR[] NOT NULL,       -- issue | reference | stacked | fix | revert | author
    kept            BOOLEAN NOT NULL,
    reasons         VARCHAR[] NOT NULL,       -- substantive | chain_too_small | chain_too_large, has_tests
    figures         JSON,                     -- members, span_days, authors, files, code_lines, logic_lines, ...
    first_merged_at TIMESTAMP,
    last_merged_at  TIMESTAMP,
    rules_version   VARCHAR,
    detected_at     TIMESTAMP NOT NULL,
    run_id          VARCHAR
);

-- Every edit of a task keeps the content it replaced: revision 0 is what the rewriter wrote.
CREATE TABLE IF NOT EXISTS task_revisions (
    task_id         VARCHAR NOT NULL,
    revision        INTEGER NOT NULL,
    content         JSON NOT NULL,            -- the task fields as they were
    editor          VARCHAR,
    note            VARCHAR,
    saved_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (task_id, revision)
);

-- MinHash signatures for near-duplicate detection, computed once per task.
CREATE TABLE IF NOT EXISTS task_signatures (
    task_id         VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,         -- query | patch
    sig             UBIGINT[],                -- NULL when there is nothing to compare
    PRIMARY KEY (task_id, kind)
);

-- Conditional-request cache for GitHub REST: an unchanged resource costs a 304.
CREATE TABLE IF NOT EXISTS http_cache (
    url             VARCHAR PRIMARY KEY,
    etag            VARCHAR NOT NULL,
    body            JSON,
    fetched_at      TIMESTAMP NOT NULL
);

-- Append-only audit log of every review action.
CREATE SEQUENCE IF NOT EXISTS review_event_ids START 1;
CREATE TABLE IF NOT EXISTS review_events (
    event_id        BIGINT PRIMARY KEY DEFAULT nextval('review_event_ids'),
    task_id         VARCHAR NOT NULL,
    reviewer        VARCHAR NOT NULL,
    action          VARCHAR NOT NULL,         -- approve | reject | needs-edit | skip | edit
    note            VARCHAR,
    status_before   VARCHAR,
    status_after    VARCHAR,
    acted_at        TIMESTAMP NOT NULL,       -- when the curator acted (not when applied)
    journal_id      VARCHAR                   -- the review journal's id of the action
);

CREATE TABLE IF NOT EXISTS runs (
    run_id          VARCHAR PRIMARY KEY,
    started_at      TIMESTAMP NOT NULL,
    ended_at        TIMESTAMP,
    status          VARCHAR NOT NULL,         -- running | ok | partial | failed | interrupted
    source          VARCHAR,
    config_hash     VARCHAR,
    pid             INTEGER,
    counts          JSON,                     -- slash-keyed counters, e.g. {"filter/dropped/docs_only": 3}
    errors          JSON                      -- [{"stage","reason","message","repo","number"}]
);

-- Skips and failures, per PR or repository; a later run retries what is marked transient
-- or what a stage can redo (e.g. a rewrite that failed).
CREATE TABLE IF NOT EXISTS failures (
    stage           VARCHAR NOT NULL,         -- source | filter | rewrite | queue
    repo            VARCHAR NOT NULL DEFAULT '',
    number          INTEGER NOT NULL DEFAULT 0,
    reason          VARCHAR NOT NULL,
    message         VARCHAR NOT NULL,
    detail          VARCHAR,
    transient       BOOLEAN DEFAULT false,
    attempts        INTEGER NOT NULL DEFAULT 1,
    first_at        TIMESTAMP NOT NULL,
    last_at         TIMESTAMP NOT NULL,
    run_id          VARCHAR,
    resolved        BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (stage, repo, number)
);

-- Incremental crawl state per repository and source.
CREATE TABLE IF NOT EXISTS cursors (
    repo            VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    watermark       VARCHAR,                  -- e.g. newest updatedAt fully processed
    cursor          VARCHAR,                  -- e.g. GraphQL endCursor of an unfinished pass
    state           JSON,
    updated_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (repo, source)
);

CREATE OR REPLACE VIEW candidates AS
SELECT p.repo, p.number, p.title, p.author, p.author_is_bot, p.merged_at, p.url,
       p.additions, p.deletions, p.changed_files, p.labels,
       d.kept, d.reasons, d.filter_version, d.metrics, d.decided_at
FROM pull_requests p
LEFT JOIN (
    SELECT * FROM decisions
    QUALIFY row_number() OVER (PARTITION BY repo, number ORDER BY decided_at DESC, filter_version) = 1
) d USING (repo, number);

CREATE OR REPLACE VIEW review_queue AS
SELECT task_id, repo, number, pr_url AS url, title, category, difficulty,
       judge_score, confidence, rewriter, model, prompt_version, flags, dup_of,
       status, created_at, kind, members
FROM tasks
WHERE status = 'pending'
  -- a task its own rewriter flagged as trivial or not code waits outside the queue
  AND NOT list_has_any(coalesce(flags, []::VARCHAR[]), ['trivial', 'not_code'])
  -- so does a chain task whose chain is gone: later PRs re-shaped it (the chain that
  -- replaced it has a task of its own), or the chain rules changed
  AND (kind IS DISTINCT FROM 'chain' OR chain_id IN (SELECT chain_id FROM chains))
  -- and a PR task whose PR the rules now drop (they changed since it was written): it
  -- comes back if a later rule change keeps the PR again
  AND NOT coalesce(pr_dropped, false)
ORDER BY judge_score DESC NULLS LAST, confidence DESC NULLS LAST, created_at, task_id;

CREATE OR REPLACE VIEW approved_tasks AS
SELECT t.* EXCLUDE (pr_url), p.url AS pr_url, p.base_sha, p.merge_sha, p.merged_at, r.license
FROM tasks t
JOIN pull_requests p USING (repo, number)
LEFT JOIN repos r USING (repo)
WHERE t.status = 'approved';

CREATE OR REPLACE VIEW reviewer_stats AS
SELECT reviewer,
       count(*) AS actions,
       count(DISTINCT task_id) AS tasks,
       count(*) FILTER (WHERE action = 'approve') AS approvals,
       count(*) FILTER (WHERE action = 'reject') AS rejections,
       count(*) FILTER (WHERE action = 'needs-edit') AS needs_edit,
       count(*) FILTER (WHERE action = 'skip') AS skips,
       count(*) FILTER (WHERE action = 'edit') AS edits,
       min(acted_at) AS first_action_at,
       max(acted_at) AS last_action_at
FROM review_events
GROUP BY reviewer;
