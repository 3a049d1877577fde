"""The live web preview of ``device run --preview [HOST:]PORT``: a page served by the device
process showing the frame with its digit boxes, the 28x28 input the model received, the
prediction, live latency / fps / memory charts, and buttons that save the frame as a labelled
sample.  :mod:`device.preview.hub` is the loop observer and publisher (the loop never waits
for it), :mod:`device.preview.server` the HTTP side and its access rules, ``page.html`` the
page (one self-contained file: a Pi has no internet to fetch scripts from).
"""

from device.preview.hub import PreviewHub
from device.preview.server import PreviewServer

__all__ = ["PreviewHub", "PreviewServer"]
