"""The filter against hand-labelled PRs: two project histories built here from
tests/data/eval_*.toml, labelled (tests/data/eval_*_labels.tsv) before the rules were tuned."""

from __future__ import annotations

from pathlib import Path

import pytest
from rulesets import LOOSE_SUBSTANCE

from synth.errors import ConfigError
from synth.evaluation import Label, evaluate, read_labels
from synth.models import Decision
from synth.sources.history import build_repository, load_history

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def eval_repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return [build_repository(load_history(DATA / f"eval_{n}.toml"), root / n) for n in ("py", "ts")]


def test_precision_and_recall_on_the_labelled_set(cli, eval_repos, db):
    for repo in eval_repos:
        assert cli("run", "--git", repo, "--no-rewrite", "--db", db).code == 0
    labels = [DATA / "eval_py_labels.tsv", DATA / "eval_ts_labels.tsv"]
    assert sum(len(read_labels(p)) for p in labels) >= 80
    r = cli("filters", "eval", *labels, "--db", db)
    assert r.code == 0, r
    line = next(x for x in r.out.splitlines() if x.startswith("precision"))
    precision = float(line.split()[1])
    recall = float(line.split()[3])
    assert precision >= 0.9 and recall >= 0.8, r.out
    assert "dropped, by reason code" in r.out


def test_eval_math_and_label_errors(tmp_path):
    d = lambda n, kept: Decision("o/r", n, kept, ("substantive",) if kept else ("too_small",), "v")  # noqa: E731
    labels = [Label("o/r", 1, "substantive"), Label("o/r", 2, "trivial"),
              Label("o/r", 3, "substantive"), Label("o/r", 4, "trivial")]
    rep = evaluate(labels, {("o/r", 1): d(1, True), ("o/r", 2): d(2, True),
                            ("o/r", 3): d(3, False), ("o/r", 4): d(4, False)})
    assert (rep.tp, rep.fp, rep.fn, rep.tn) == (1, 1, 1, 1)
    assert rep.precision == 0.5 and rep.recall == 0.5 and rep.f1 == 0.5
    bad = tmp_path / "bad.tsv"
    bad.write_text("repo\tpr_number\tlabel\no/r\t1\tmaybe\n")
    with pytest.raises(ConfigError, match="trivial or substantive"):
        read_labels(bad)
    bad.write_text("name\tnumber\n")
    with pytest.raises(ConfigError, match="header"):
        read_labels(bad)


def test_eval_names_missing_prs(cli, db, tmp_path, history_100):
    path, _ = history_100
    cli("run", "--git", path, "--no-rewrite", "--db", db, "--limit", "2")
    labels = tmp_path / "l.tsv"
    labels.write_text("repo\tpr_number\tlabel\nacme/widgets\t9999\ttrivial\n")
    r = cli("filters", "eval", labels, "--db", db)
    assert r.code == 1 and "acme/widgets#9999" in r.err


def test_rescore_after_a_rule_change_needs_no_source(cli, history_100, db, tmp_path):
    path, _ = history_100
    assert cli("run", "--git", path, "--no-rewrite", "--db", db).code == 0
    from dbutil import q
    before = q(db, "SELECT count(*) FILTER (WHERE kept), any_value(filter_version) FROM candidates")[0]
    from synth.filtering import default_rules_path
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    (tmp_path / "synth.toml").write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n')
    r = cli("filter", "--rescore", "--db", db)
    assert r.code == 0 and "rescored 100 PRs" in r.out
    after = q(db, "SELECT count(*) FILTER (WHERE kept), any_value(filter_version) FROM candidates")[0]
    assert after[0] > before[0] and after[1] != before[1]
    assert q(db, "SELECT count(*) FROM decisions") == [(200,)]  # both versions kept
    r = cli("explain", "acme/widgets#10", "--db", db)
    assert r.code == 0 and "decision: KEPT" in r.out and "substance.min_logic_lines" in r.out
    r = cli("explain", "acme/widgets#9999", "--db", db)
    assert r.code == 1 and "not in the queue" in r.err


def test_a_labelled_set_mined_from_clones_split_with_held_out_errors_unlisted(cli, eval_repos,
                                                                               tmp_path):
    """`filters eval --clones`: the labelled set's PRs mined straight from clones (no queue),
    figures per split; a held-out split's false positives and negatives are counted, not
    listed, unless --list-heldout."""
    clones = tmp_path / "clones"
    clones.mkdir()
    (clones / "evalcorp+pyledger").symlink_to(eval_repos[0])
    rows = [r for r in read_labels(DATA / "eval_py_labels.tsv")]
    lines = ["\t".join(("repo", "number", "commit", "label", "category", "split", "reason"))]
    for i, lab in enumerate(rows):
        # every substantive PR labelled trivial in the held-out half: errors, surely
        split = "heldout" if i % 2 else "tune"
        label = "trivial" if split == "heldout" else lab.label
        lines.append("\t".join((lab.repo, str(lab.number), "", label, "", split, lab.note)))
    labels = tmp_path / "set.tsv"
    labels.write_text("\n".join(lines) + "\n")
    r = cli("filters", "eval", labels, "--clones", clones)
    assert r.code == 0, r
    assert r.out.index("split: heldout") < r.out.index("split: tune")
    held, tune = r.out.split("split: tune")
    assert "kept but labelled trivial (" not in held and "not listed" in held, held
    assert "--list-heldout" in held
    r = cli("filters", "eval", labels, "--clones", clones, "--split", "heldout", "--list-heldout")
    assert r.code == 0 and "kept but labelled trivial:" in r.out
    assert "split: tune" not in r.out


def test_filters_eval_with_the_llm_triage_reports_rules_and_triage_together(cli, eval_repos,
                                                                           tmp_path, monkeypatch):
    """`filters eval --clones --triage`: every labelled PR the rules keep goes to the triage
    (the OpenAI stand-in here, answering from the labels by the PR's title); each split gets
    a second report, the rules and the triage together, with what the calls cost."""
    import json
    import re

    from standins.openai_server import OpenAIStandIn

    from synth.sources.git import GitSource
    clones = tmp_path / "clones"
    clones.mkdir()
    (clones / "evalcorp+pyledger").symlink_to(eval_repos[0])
    labels = {lab.number: lab.label for lab in read_labels(DATA / "eval_py_labels.tsv")}
    src = GitSource(eval_repos[0])
    label_of_title = {pr.title: labels[pr.number]
                      for pr in src.pull_requests(src.list_pr_commits()) if pr.number in labels}

    def oracle(request: dict) -> str:  # knows the label: the triage can only help here
        text = request["messages"][-1]["content"]
        title = re.search(r"Title: (.*)", text).group(1).strip()
        verdict = label_of_title[title]
        return json.dumps({"verdict": verdict, "reason": f"labelled {verdict}"})

    lines = ["\t".join(("repo", "number", "commit", "label", "category", "split", "reason"))]
    for i, (n, label) in enumerate(sorted(labels.items())):
        lines.append("\t".join(("evalcorp/pyledger", str(n), "", label, "",
                                "heldout" if i % 2 else "tune", "")))
    set_tsv = tmp_path / "set.tsv"
    set_tsv.write_text("\n".join(lines) + "\n")
    loose = tmp_path / "loose.toml"  # keep more of the small PRs: some of them trivial
    loose.write_text(LOOSE_SUBSTANCE)
    from synth.filtering import default_rules_path
    config = tmp_path / "synth.toml"
    config.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n')
    with OpenAIStandIn(responder=oracle) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        r = cli("filters", "eval", set_tsv, "--clones", clones, "--triage", "--model", "m",
                "--config", config)
        assert r.code == 0, r
        calls = llm.calls
    reports = re.split(r"\n+(?=split: )", r.out.strip())
    assert len(reports) == 4, r.out  # per split: the rules, then the rules and the triage
    rules_only = {rep.splitlines()[0]: rep for rep in reports if "LLM triage" not in rep}
    both = [rep for rep in reports if "rules + LLM triage (m)" in rep]
    assert len(both) == 2 and all("tokens" in rep and "$" in rep for rep in both)
    kept = sum(int(re.search(r"^kept\s+(\d+)\s+(\d+)", rep, re.M).group(1))
               + int(re.search(r"^kept\s+(\d+)\s+(\d+)", rep, re.M).group(2))
               for rep in rules_only.values())
    assert calls == kept  # one call per labelled PR the rules keep, no more
    fps = [int(re.search(r"^kept\s+\d+\s+(\d+)", rep, re.M).group(1)) for rep in rules_only.values()]
    assert sum(fps) > 0  # the loose rules keep trivial PRs: something for the triage to do
    for rep in both:  # an oracle triage removes every false positive and keeps every true one
        assert re.search(r"^kept\s+\d+\s+0$", rep, re.M), rep
        assert rep.splitlines()[0].startswith("split: ")
    held = next(rep for rep in both if rep.startswith("split: heldout"))
    assert "kept but labelled trivial:" not in held  # a held-out split's errors stay unlisted


def test_the_labelled_set_of_real_prs_is_well_formed():
    """data/labels/real_prs.tsv (filters/RUBRIC.md): one row per PR, a commit to re-read it
    from, a label and a category from the rubric, the majority of its labellers' labels, and
    a split by repository (no project in both the tune and the held-out split)."""
    import csv
    import re

    path = Path(__file__).parent.parent / "data" / "labels" / "real_prs.tsv"
    labels = read_labels(path)  # the reader's own checks first
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert len(rows) == len(labels) >= 300
    keys = [(r["repo"], int(r["number"])) for r in rows]
    assert len(set(keys)) == len(keys)
    rubric = (Path(__file__).parent.parent / "filters" / "RUBRIC.md").read_text(encoding="utf-8")
    categories = set(re.findall(r"^\| `(\w+)` \|", rubric, re.M)) | {
        "feature", "bugfix", "redesign", "performance"}
    splits: dict[str, set[str]] = {}
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{40}", r["commit"]), r
        assert r["label"] in ("substantive", "trivial") and r["category"] in categories, r
        assert (r["category"] in ("feature", "bugfix", "redesign", "performance")) == (
            r["label"] == "substantive"), r
        assert r["label2"] in ("substantive", "trivial"), r
        # the label is the majority: both passes agree, or a third broke the tie
        assert r["label"] == (r["label3"] or r["label2"]), r
        splits.setdefault(r["split"], set()).add(r["repo"])
    assert set(splits) == {"tune", "heldout"}
    assert not splits["tune"] & splits["heldout"]
    assert len(splits["heldout"]) >= 2


def test_a_rule_change_takes_tasks_of_dropped_prs_out_of_the_review_queue(cli, history_100,
                                                                          db, tmp_path):
    """After a rule change, a pending task whose PR the new rules drop leaves review_queue
    (schema 10: tasks.pr_dropped follows each PR's latest decision); its status is not
    touched, and it comes back when the rules keep the PR again."""
    from dbutil import q

    from synth.filtering import default_rules_path
    path, _ = history_100
    loose = tmp_path / "loose.toml"
    loose.write_text(LOOSE_SUBSTANCE)
    settings = tmp_path / "synth.toml"
    settings.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n')
    assert cli("run", "--git", path, "--db", db).code == 0  # the loose rules: more kept
    tasks = q(db, "SELECT count(*) FROM tasks WHERE kind = 'pr'")[0][0]
    assert q(db, "SELECT count(*) FROM review_queue WHERE kind = 'pr'")[0][0] > 0
    settings.write_text("")  # back to the default rules: some of those PRs are dropped now
    assert cli("filter", "--rescore", "--db", db).code == 0
    dropped = q(db, "SELECT count(*) FROM tasks t JOIN candidates c USING (repo, number) "
                    "WHERE t.kind = 'pr' AND NOT c.kept")[0][0]
    assert 0 < dropped < tasks
    assert q(db, "SELECT count(*) FROM tasks WHERE pr_dropped") == [(dropped,)]
    assert q(db, "SELECT count(*) FROM review_queue r JOIN candidates c USING (repo, number) "
                 "WHERE r.kind = 'pr' AND NOT c.kept") == [(0,)]
    assert q(db, "SELECT count(*) FROM tasks WHERE status = 'pending'") == [(tasks,)]
    listed = cli("review", "list", "--db", db, "--limit", "1000").out
    gone = q(db, "SELECT task_id FROM tasks WHERE pr_dropped LIMIT 1")[0][0]
    assert gone not in listed
    assert "the current filter rules drop this PR" in cli("review", "show", gone, "--db", db).out
    settings.write_text(f'[filters]\nfiles = ["{default_rules_path()}", "{loose}"]\n')
    assert cli("filter", "--rescore", "--db", db).code == 0  # kept again: back in the queue
    assert q(db, "SELECT count(*) FROM tasks WHERE pr_dropped") == [(0,)]
    assert gone in cli("review", "list", "--db", db, "--limit", "1000").out
