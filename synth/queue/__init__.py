"""The DuckDB review queue, by concern: the only package that imports duckdb.

    schema.py    migrations (schema.sql, beside the package, is the curator contract)
    store.py     the file and its connections (Queue, the held connection of a run)
    rows.py      a batch as columns (pure)
    writes.py    Arrow upserts in one transaction per batch; the spool
    reads.py     every query synth itself runs
    curation.py  review actions, edits, ratings, near-duplicates
    exports.py   the export query
"""

from .reads import (chain_candidates, chain_state, chains_of, foreign_changes, foreign_changes_many,
                    pending_chains)
from .reads import (crawl_state, decided_prs, funnel, github_repos, load_http_cache,
                    load_pull_requests, pending_rewrites, recent_runs, repo_list, repo_meta,
                    triage_verdicts, triaged)
from .schema import SCHEMA_VERSION, TABLES, migrate, utcnow
from .store import HeldConnection, Queue
from .writes import WriteResult, abandon_runs, save_http_cache

__all__ = [
    "Queue", "HeldConnection", "WriteResult", "SCHEMA_VERSION", "TABLES", "migrate", "utcnow",
    "crawl_state", "decided_prs", "funnel", "github_repos", "load_http_cache",
    "load_pull_requests", "pending_rewrites", "recent_runs", "repo_list", "repo_meta",
    "triage_verdicts", "triaged",
    "chain_candidates", "chain_state", "chains_of", "foreign_changes", "foreign_changes_many", "pending_chains",
    "abandon_runs", "save_http_cache",
]
