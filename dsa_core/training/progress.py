"""Progress bars: tqdm when installed (it is in every ComfyUI install), a plain line printer otherwise."""

from __future__ import annotations

import sys
import time


class _Plain:
    def __init__(self, total=None, desc="", disable=False, initial=0, **_):
        self.total, self.desc, self.disable, self.n = total, desc, disable, initial
        self._t0 = self._last = time.time()
        self._post = ""

    def update(self, n=1):
        self.n += n
        now = time.time()
        if not self.disable and (now - self._last > 5 or self.n == self.total):
            self._last = now
            tot = f"/{self.total}" if self.total else ""
            print(f"{self.desc}: {self.n}{tot} [{now - self._t0:.0f}s] {self._post}", file=sys.stderr, flush=True)

    def set_postfix_str(self, s, refresh=True):
        self._post = s

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def progress(total=None, desc="", disable=False, initial=0):
    try:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, disable=disable, initial=initial, dynamic_ncols=True, mininterval=1.0)
    except ImportError:  # pragma: no cover
        return _Plain(total=total, desc=desc, disable=disable, initial=initial)
