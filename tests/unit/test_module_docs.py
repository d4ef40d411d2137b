# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/modules/*.md are generated from the modules' DOCUMENTATION, EXAMPLES and RETURN
(scripts/gen_module_docs.py, `make docs`): a documentation change without regenerating fails here."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "gen_module_docs.py")


def run(*args):
    # a process of its own: the generator initialises ansible's plugin loader for the collection
    return subprocess.run([sys.executable, SCRIPT] + list(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)


def test_every_module_page_is_what_the_generator_writes_now():
    modules = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "modules")) if f.endswith(".py"))
    pages = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "docs", "modules")) if f.endswith(".md"))
    assert pages == modules
    out = run("--check")
    assert out.returncode == 0, "docs/modules is out of date, run `make docs`:\n" + out.stdout


def test_a_page_that_differs_is_named(tmp_path):
    """A page edited by hand (or a DOCUMENTATION changed without `make docs`) fails the check, by name."""
    docs = os.path.join(ROOT, "docs", "modules")
    for name in os.listdir(docs):
        with open(os.path.join(docs, name), encoding="utf-8") as handle:
            (tmp_path / name).write_text(handle.read(), encoding="utf-8")
    assert run("--check", "--docs-dir", str(tmp_path)).returncode == 0
    page = tmp_path / "rollback_record.md"
    text = page.read_text(encoding="utf-8")
    # what the generator puts there: both tables, the doc fragment's options, no_log and env from the argument spec
    assert "## Options" in text and "## Return values" in text and "### Connection options from `resilience.dr.postgres`" in text
    line = [row for row in text.splitlines() if row.startswith("| `pg_login_password`")][0]
    assert "no_log" in line and "`PGPASSWORD`" in line
    page.write_text(text.replace("## Notes", "## Notes (edited by hand)"), encoding="utf-8")
    out = run("--check", "--docs-dir", str(tmp_path))
    assert out.returncode == 1 and "rollback_record.md" in out.stdout and "traffic_switch.md" not in out.stdout
    # a page without a module is refused too
    page.write_text(text, encoding="utf-8")
    (tmp_path / "gone_module.md").write_text("# gone\n", encoding="utf-8")
    out = run("--check", "--docs-dir", str(tmp_path))
    assert out.returncode == 1 and "gone_module.md has no module" in out.stdout
