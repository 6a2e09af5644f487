"""Run a scoring command in a child process with a deliberately slow model, so tests can kill
it mid-file: `python -m tests.serving.slow_scoring score ...` (the real CLI) or
`python -m tests.serving.slow_scoring inbox INBOX OUTBOX MODEL` (the inbox, as the flow's task
runs it: in the main thread). Prints 'STARTED' once the first batch has been scored."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from sign_mlops.serving import model as model_module

_real_predict = model_module.LoadedModel.predict
_calls = {"n": 0}


def _slow_predict(self, pixels):
    _calls["n"] += 1
    if _calls["n"] == 2:
        print("STARTED", flush=True)
    time.sleep(0.05)
    return _real_predict(self, pixels)


def main() -> None:
    model_module.LoadedModel.predict = _slow_predict
    if sys.argv[1] == "inbox":
        from sign_mlops.serving.inbox import score_inbox
        from sign_mlops.serving.model import load_onnx
        from sign_mlops.serving.outputs import sigterm_as_exception

        inbox, outbox, model = sys.argv[2:5]
        with sigterm_as_exception():
            result = score_inbox(Path(inbox), Path(outbox), load_onnx(Path(model)), settle_s=0,
                                 scorer=None)
        print("RESULT", sorted(result.scored), result.busy, flush=True)
        return
    from sign_mlops.cli.app import app

    app(sys.argv[1:])


if __name__ == "__main__":
    main()
