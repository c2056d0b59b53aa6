"""The package's layers (pyproject.toml, [tool.importlinter]): no module imports from a layer
above its own, function-level imports included."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_layers_contract_holds():
    out = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "1 kept, 0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]


def test_every_file_of_the_package_is_readable_in_one_sitting():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "aipo_lite").rglob("*.py")
            if (n := len(p.read_text().splitlines())) >= 300}
    assert not long, f"files of 300 lines or more: {long}"


def test_notebooks_import_only_the_public_api():
    """Notebooks are thin: everything they use from the kit comes from `aipo_lite` itself (its
    lazy public names), so a regroup inside the package never breaks them."""
    import aipo_lite
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        src = nb.read_text()
        deep = re.findall(r"^\s*(?:from|import) aipo_lite\.\S+", src, re.M)
        assert not deep, f"{nb.name} imports below the public API: {deep}"
        for block in re.findall(r"^from aipo_lite import \(?([^)\n]+(?:\n    [^)\n]+)*)\)?", src, re.M):
            for name in (n.strip() for n in block.replace("\n", ",").split(",") if n.strip()):
                assert name in aipo_lite.__all__, f"{nb.name}: {name} is not a public name of aipo_lite"
