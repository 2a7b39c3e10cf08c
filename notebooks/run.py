"""Executes notebooks headless, in their own folder, failing on the first cell that raises.

Usage: python run.py OUT_DIR NOTEBOOK.ipynb [...]  — the executed copies (with outputs) go to
OUT_DIR; the notebooks in git stay without outputs.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in sys.argv[2:]:
        path = Path(name)
        nb = nbformat.read(path, as_version=4)
        stale = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 and (c.get("outputs") or c.get("execution_count"))]
        if stale:
            print(f"{path.name}: cells {stale} carry outputs; notebooks are kept without them "
                  "(clear them before committing)", file=sys.stderr)
            return 1
        NotebookClient(
            nb, timeout=600, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent.resolve())}},
        ).execute()
        figures = sum(
            1 for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if "image/png" in o.get("data", {})
        )
        nbformat.write(nb, out / path.name)
        if figures == 0:
            print(f"{path.name}: ran, but drew no figure", file=sys.stderr)
            return 1
        print(f"{path.name}: ok, {figures} figure(s) -> {out / path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
