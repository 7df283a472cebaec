"""Interactive HTML report: run stores -> one self-contained plotly page comparing runs.

``data`` turns records into numpy arrays, ``plots`` turns them into figures
(Santurkar et al. 2018, Fig. 2-11) and ``html`` writes the page; in a notebook,
``figures(path)`` gives the figures by section and ``Experiment(path)`` renders
inline (``notebook``). Never imports torch.
"""

from landscape.report.html import build_report, default_output, write_report
from landscape.report.notebook import Experiment, figures

__all__ = ["Experiment", "build_report", "default_output", "figures", "write_report"]
