"""Replay: finished studies as lookup tables, driven through the search loop to compare samplers.

The package itself is callable: `nnsearch.replay(study, db=...)` is
`nnsearch.replay.compare.replay_study` (the facade exports the name `replay`,
which is also this package's, so the package answers the call).
"""

import sys
import types


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):  # -> nnsearch.replay.compare.ReplayResult
        from nnsearch.replay.compare import replay_study

        return replay_study(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
