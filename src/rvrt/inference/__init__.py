"""Running trained models on real footage: one runner for every job that turns frames into frames.

The data flows one way, module by module:

* :mod:`.options`: what a run is asked (stages, device, range, encoding, safety), checked once;
* :mod:`.planner` with :mod:`.memory`: the tiles of each stage, from a measured memory model;
* :mod:`.stages`: a model stage (restoration in temporal windows :mod:`.temporal`, frame
  interpolation :mod:`.vfi`), blending tiles with :mod:`.tiling`; progress from inside the model
  (:mod:`.progress`);
* :mod:`.outputs`: claiming, refusing, overwriting and resuming an output with its run log;
* :mod:`.runner`: decode -> stages -> encode for one input; :mod:`.batch` for many;
* :mod:`.jobs`: the Python entry points (``rvrt.restore``, ``rvrt.interpolate``, ``..._iter``).

Frames are read and written by :mod:`rvrt.media`; models come from :func:`rvrt.api.select_model`.
"""
