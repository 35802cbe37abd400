"""geozoo leaves other libraries as they are: importing geozoo, its CLI and its optimizer, and
building escnn layers, changes no function, setting or import hook of geoopt, escnn or joblib
(DESIGN.md: "geozoo subclasses or wraps ... and never patches another package's code")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("escnn")
pytest.importorskip("geoopt")

# What geozoo does that could touch them: import its packages and CLI, look up its optimizer,
# build escnn groups, field types and a steerable layer (escnn's solver settings are switched
# inside geozoo's calls), and export it.
_USE_GEOZOO = """
import geozoo, geozoo.cli, geozoo.nn
from geozoo.nn.steerable import SteerableConvBlock, field_type, steerable_gspace
block = SteerableConvBlock(field_type(steerable_gspace("d4"), 1, "trivial"), 2).eval()
block.export()
geozoo.nn.RiemannianAdam(block.parameters(), lr=0.1)
"""

# the user imported the libraries first: everything geozoo then does must leave them identical
_LIBRARIES_FIRST = (
    """
import inspect, sys
import joblib, geoopt, escnn, escnn.group, escnn.group._numerical as numerical
before = (
    joblib.Memory.__init__, geoopt.optim.RiemannianAdam.__init__,
    str(inspect.signature(geoopt.optim.RiemannianAdam.__init__)), numerical.randomized_svd,
    escnn.group.__cache_path__, list(sys.meta_path),
)
"""
    + _USE_GEOZOO
    + """
after = (
    joblib.Memory.__init__, geoopt.optim.RiemannianAdam.__init__,
    str(inspect.signature(geoopt.optim.RiemannianAdam.__init__)), numerical.randomized_svd,
    escnn.group.__cache_path__, list(sys.meta_path),
)
names = ["joblib.Memory.__init__", "RiemannianAdam.__init__", "its signature",
         "randomized_svd", "escnn.group.__cache_path__", "sys.meta_path"]
changed = [n for n, b, a in zip(names, before, after) if not (b is a or b == a)]
assert not changed, changed
assert numerical.randomized_svd is not None
print("ok")
"""
)

# geozoo imported them itself: they must be as a fresh import of the library leaves them
_GEOZOO_FIRST = (
    """
import sys
import joblib
memory_init, meta_path = joblib.Memory.__init__, list(sys.meta_path)
import geozoo.cli, geozoo.nn
assert "geoopt" not in sys.modules, "importing geozoo imports geoopt"
"""
    + _USE_GEOZOO
    + """
import inspect, os
import escnn.group, escnn.group._numerical as numerical, geoopt
import sklearn.utils.extmath as extmath
init = geoopt.optim.RiemannianAdam.__init__
assert "__signature__" not in vars(init), "geoopt's signature was rewritten"
assert any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(init).parameters.values())
assert joblib.Memory.__init__ is memory_init
assert numerical.randomized_svd is extmath.randomized_svd
assert escnn.group.__cache_path__ == os.path.join(os.path.dirname(escnn.group.__file__), "_cache")
assert sys.meta_path == meta_path
print("ok")
"""
)


@pytest.mark.parametrize(
    "script", [_LIBRARIES_FIRST, _GEOZOO_FIRST], ids=["libraries-first", "geozoo-first"]
)
def test_geozoo_leaves_geoopt_escnn_and_joblib_unchanged(script, tmp_path):
    pytest.importorskip("sklearn")
    env = {**os.environ, "GEOZOO_ESCNN_CACHE": str(tmp_path / "escnn-cache")}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
