"""``rvrt ui``: a web page on this computer to restore a video without the command line.

Drop a video, a zip of frames or a folder of frames, choose a model (and a weights file), look at
one restored frame against the input (a wipe or side by side), restore the whole input with
progress, and download the result. Built on the standard library only (:mod:`http.server`, a
background thread, one HTML file shipped with the package): no network at run time, nothing else
to install. Bound to 127.0.0.1 unless told otherwise; see :mod:`rvrt.ui.server` for the API.
"""

from rvrt.ui.app import UIApp
from rvrt.ui.server import UIServer, make_server

__all__ = ["UIApp", "UIServer", "make_server"]
