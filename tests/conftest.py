"""Suite-wide settings.

One torch thread per test process: the models in tests are tiny, where a second thread only adds
synchronisation cost, and on a shared 2-core machine oversubscribed threads make each step ~10x slower.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
