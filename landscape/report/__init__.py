"""Interactive HTML report: run stores -> one self-contained plotly page comparing runs.

``data`` turns records into numpy arrays, ``plots`` turns them into figures
(Santurkar et al. 2018, Fig. 2-11) and ``html`` writes the page. Never imports torch.
"""

from landscape.report.html import build_report, default_output, write_report

__all__ = ["build_report", "default_output", "write_report"]
