"""The package's layers (pyproject.toml, [tool.importlinter]): no module imports from a layer
above its own, function-level imports included."""

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
