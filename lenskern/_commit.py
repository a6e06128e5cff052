"""The git commit this copy of lenskern was built from, or None.

asv's build_command (asv.conf.json) rewrites this file in the checkout it
builds, from ``git rev-parse HEAD`` there, so every wheel asv installs names
the commit it holds, whatever commit it comes from (older ones included).
The benchmarks record it in each process, and ``python -m
lenskern.observatory compare`` fails when a side imported another commit's
code. A source checkout, or a wheel built outside asv, keeps None.
"""

COMMIT: str | None = None
