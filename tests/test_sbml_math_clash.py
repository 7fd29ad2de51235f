"""libsbml beside libsedml/libcombine: the compiled germ line still reads the model's math.

Importing libsedml or libcombine after libsbml makes ``ASTNode.getType()`` return an opaque SWIG
pointer (it compares equal to no ``AST_*`` constant), which broke reading rate laws in CI, where the
OMEX tests import libsedml first. The kernel must read math with ASTNode's predicates instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CODE = """
import libsbml, libsedml, libcombine
assert not isinstance(libsbml.parseL3Formula("a + 1").getType(), int)  # the clash is really there
from ra_model.engines.germline import kernel_for
from ra_model.model.source import default_sbml
kernel = kernel_for(default_sbml())
print(len(kernel.table.chain))
"""


def test_the_germline_table_reads_math_after_libsedml_is_imported(tmp_path: Path) -> None:
    # run outside the checkout: "python -c" puts the working directory first on sys.path, where the source
    # tree would shadow the installed package (whose model files are mapped in by the installation)
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip().splitlines()[-1]) == 40
