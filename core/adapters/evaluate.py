"""`python -m core.adapters.evaluate`, the documented command: base vs adapter for an adapter's model card
(`core.evaluation.adapter_card`). The command is `core/cli/evaluate_adapter.py`; importing it from this
package would be an import cycle, so this process becomes that command."""

import os
import sys

if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "core.cli.evaluate_adapter", *sys.argv[1:]])
