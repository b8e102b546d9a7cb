"""nacode: sodium (23Na) MRI denoising, reproduced.

The companion package of the nacode book. Modules follow the data as it flows (see
``DESIGN.md`` in the project's shared folder): ``anatomy`` (virtual subjects) → ``physics``
(acquisition) → ``recon`` → ``denoise`` → ``evaluate`` → ``studies``; ``book``, ``manifest``,
``profiles`` and ``results`` run the executable book. Heavy dependencies (torch, matplotlib,
papermill) are imported lazily by the modules that need them.
"""

from __future__ import annotations

import warnings

__version__ = "0.1.0"

# sigpy imports tqdm.auto; without ipywidgets in a notebook kernel tqdm warns once and falls
# back to text progress bars, which is what the book wants.
warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
