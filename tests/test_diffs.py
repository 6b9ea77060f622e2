"""Pure diff analysis: code vs comment lines per language, and change kinds."""

from __future__ import annotations

from synth.diffs import PathClassifier, change_kinds, count_code_lines, language_of


def patch(added=(), removed=()):
    lines = ["@@ -1,1 +1,1 @@"] + [f"-{x}" for x in removed] + [f"+{x}" for x in added]
    return "\n".join(lines) + "\n"


def test_python_comments_docstrings_and_blanks_are_not_code():
    p = patch(added=['"""Module doc."""', "", "# a comment", "def f(x):",
                     '    """Docstring."""', "    return x + 1  # trailing", "    "])
    c = count_code_lines("pkg/mod.py", p)
    assert (c.code_added, c.other_added) == (2, 5)


def test_python_string_left_open_by_the_hunk_is_string_content():
    p = patch(added=['    s = """unterminated', "    x = more(text)",
                     "# not a comment: inside the string"])
    c = count_code_lines("a.py", p)
    assert c.code_added == 3 and c.other_added == 0


def test_python_prose_is_not_code_even_when_its_quotes_are_outside_the_hunk():
    # the inside of a module docstring whose opening and closing quotes are context lines
    p = patch(added=["    click", "    ~~~~~", "    Click is a simple Python module inspired by",
                     "    :copyright: (c) 2014 by the Pallets team.", "    >>> main()",
                     "    return value and other", "    print value", "    data = load(path)"])
    c = count_code_lines("a.py", p)
    assert (c.code_added, c.other_added) == (4, 4)


def test_python_lines_with_backticks_outside_strings_are_docstring_text():
    # tornado#2586: a hunk inside a long docstring, its reStructuredText markup reworded;
    # Python 3 code holds no backtick outside a string or a comment
    p = patch(added=["    If ``condition`` is not ``None``, the `.IOLoop` will be restarted",
                     "    * ``request``: HTTPRequest object",
                     '    msg = "use `foo` here"', "    x = 1  # see `foo`",
                     "    return f'{a}`'"])
    c = count_code_lines("a.py", p)
    assert (c.code_added, c.other_added) == (3, 2)


TQ = '"' * 3
SQ = "'" * 3


def hunk(*lines: str) -> str:
    """A hunk of context (' '), added ('+') and removed ('-') lines."""
    return "@@ -1,9 +1,9 @@ def f():\n" + "\n".join(lines) + "\n"


def test_lines_are_judged_in_their_hunks_context():
    # the docstring opens in a context line: what the change adds inside it is text
    p = hunk(f"     {TQ}There are two cookies that meet the criteria.",
             "-    Use .get and .set to be more specific.",
             "+    Use .get and .set and include the domain to be more specific.",
             f"     {TQ}", "     return jar")
    c = count_code_lines("requests/cookies.py", p)
    assert (c.code_added, c.other_added, c.code_removed) == (0, 1, 0)


def test_a_hunk_that_begins_inside_a_docstring():
    # the opening quotes lie above the hunk: its first triple quote closes the docstring,
    # so the prose before it is text and the code after it is code
    p = hunk("     the connection pool is chosen by host.",
             f"-    and by port.{TQ}", f"+    and by port and scheme.{TQ}",
             "     try:", "-        conn = self.get(request)", "+        conn = self.get(request, cert)")
    c = count_code_lines("requests/adapters.py", p)
    assert (c.code_added, c.other_added, c.code_removed, c.other_removed) == (1, 1, 1, 1)
    # lone closing quotes first in the hunk, code after them
    p = hunk(f"         {TQ}", "", "         try:",
             "-            conn = self._get_connection(request, verify, proxies)",
             "+            conn = self._get_connection(request, verify, proxies=proxies, cert=cert)")
    assert count_code_lines("requests/adapters.py", p).code_added == 1
    # a docstring's examples above a closing quote are text, the code below it is code
    p = hunk("     Examples:", "", '+        url = httpx.URL("https://[::1]")',
             '+        assert url.host == "::1"', f"         {TQ}",
             "-        host = self._uri_reference.host", "+        host: str = self._uri.host",
             '+        if host and ":" in host and host[0] == "[":',
             '+            host = host.lstrip("[").rstrip("]")', '         return host or ""')
    c = count_code_lines("httpx/_models.py", p)
    assert (c.code_added, c.other_added, c.code_removed) == (3, 2, 1)


def test_an_expression_string_closed_in_the_hunk_keeps_the_code_after_it():
    p = hunk("     complete -F %(complete_func)s %(script_names)s", f"+{SQ}", "+",
             f"+ZSH_SCRIPT = {SQ}", "+compdef %(complete_func)s", f"+{SQ}", "+",
             "+def get_completion_script(prog_name, shell):",
             "+    return ZSH_SCRIPT if shell == 'zsh' else BASH_SCRIPT")
    c = count_code_lines("click/_bashcomplete.py", p)
    assert c.code_added >= 4  # the assignment, its string, the def and the return
FRAGMENTS = [
    ["def f(x):", f"    {TQ}Doc", f"    more doc.{TQ}", "    return x  # note", "", "# c"],
    [f"x = {TQ}a", "b", f"c{TQ}.strip()", "y = 1"],
    [f"{TQ}Module docstring.{TQ}", "import os", f"{SQ}another{SQ}", f"z = f({TQ}inline{TQ})"],
    ["class A:", f"    {SQ}One line.{SQ}", "    def g(self):", f"        {TQ}", "        Text",
     f"        {TQ}", "        pass"],
    ["    value = compute(1)", "    # comment", "    other = call(", "        arg,", "    )"],
]


def test_line_scanner_agrees_with_tokenize():
    from synth.diffs import _python_code_flags, _python_scan
    for lines in FRAGMENTS:
        assert _python_scan(lines) == _python_code_flags(lines), lines


def test_c_family_block_and_line_comments():
    p = patch(added=["/* block", " * middle", " */", "int x = 1; // note", "// only",
                     "", "return x;"])
    c = count_code_lines("src/a.c", p)
    assert c.code_added == 2
    assert count_code_lines("web/a.ts", patch(added=["// c", "const a = 1;"])).code_added == 1
    assert count_code_lines("x.go", patch(added=["/* a */ x := 1"])).code_added == 1


def test_shell_ruby_and_unknown_languages():
    assert count_code_lines("run.sh", patch(added=["# c", "echo hi"])).code_added == 1
    assert count_code_lines("a.rb", patch(added=["=begin", "doc", "=end", "puts 1"])).code_added == 1
    assert count_code_lines("data.xyz", patch(added=["a", "", "b"])).code_added == 2
    assert language_of("Makefile") == "shell" and language_of("x.PY") == "python"


def test_change_kinds():
    ws = change_kinds([("a.py", "modified", patch(["x = f(a,b)"], ["x = f(a, b)"]), 1, 1)])
    assert ws.whitespace_only
    com = change_kinds([("a.py", "modified", patch(["# new words"], ["# old words"]), 1, 1)])
    assert com.comment_only and not com.whitespace_only
    imp = change_kinds([("a.py", "modified", patch(["import b", "import a"], ["import a", "import b"]), 2, 2)])
    assert imp.import_order_only
    ver = change_kinds([("pyproject.toml", "modified", patch(['version = "1.3.0"'], ['version = "1.2.9"']), 1, 1),
                        ("pkg/__init__.py", "modified", patch(['__version__ = "1.3.0"'], ['__version__ = "1.2.9"']), 1, 1)])
    assert ver.version_string_only
    real = change_kinds([("a.py", "modified", patch(["return a - b"], ["return a + b"]), 1, 1)])
    assert not (real.whitespace_only or real.comment_only or real.import_order_only
                or real.version_string_only or real.rename_only)
    ren = change_kinds([("new.py", "renamed", None, 0, 0)])
    assert ren.rename_only


def test_path_classifier_globs():
    c = PathClassifier({"docs": ["*.md", "docs/"], "tests": ["tests/", "test_*.py"],
                        "ci": [".github/"], "lock": ["**/package-lock.json"]})
    assert c("README.md") == "docs" and c("a/b/NOTES.MD") == "docs"
    assert c("docs/conf.py") == "docs" and c("src/docs.py") == "code"
    assert c("pkg/test_x.py") == "tests" and c("tests/unit/a.py") == "tests"
    assert c(".github/workflows/ci.yml") == "ci"
    assert c("web/package-lock.json") == "lock" and c("package-lock.json") == "lock"
