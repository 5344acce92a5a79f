"""What the bot relies on its libraries for, checked where a shortfall would not fail loudly by itself.

CI runs the suite twice: with the newest releases, and with the lowest versions pyproject.toml allows. An
import error or a changed API fails some test on its own; a tokenizer that cannot load does not (the bot falls
back to estimates on purpose), so it is checked here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import json
from chatbots.tokens import encoder, limits_for
print(json.dumps({model: encoder(limits_for(model).encoding).encode_ordinary("hello world")
                  for model in ("gpt-4o", "gpt-4", "a-local-model")}))
"""


def test_each_encoding_the_bot_uses_loads_offline_as_the_real_tokenizer(tmp_path: Path) -> None:
    # A fresh process and an empty tiktoken cache: the encodings must come from the installed packages.
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"gpt-4o": [24912, 2375], "gpt-4": [15339, 1917], "a-local-model": [24912, 2375]}
