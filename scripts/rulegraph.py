"""Snakemake script (rule rulegraph) and CLI: the workflow's rule graph, drawn by Snakemake, as DOT and PNG.

    python scripts/rulegraph.py docs/rulegraph.dot docs/rulegraph.png

Runs ``snakemake --rulegraph dot --forceall`` for each (configuration, targets) of ``RUNS`` (every rule those
targets can reach, whatever has already run), joins the graphs by rule name in sorted order (so that the DOT text
is reproducible) and renders it with Graphviz's ``dot``.  Both files are written atomically.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _rule import redirect_to_log  # noqa: E402

from astrorim.io.atomic import atomic_path, write_text_atomic  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# (configuration, targets): the paper-scale DAG, and the research studies, which exist per configuration
# (workflow/rules/studies.smk) and are drawn from cpu_small's, the configuration with the most of them.
RUNS = (("config/config.yaml", ("all",)), ("config/cpu_small.yaml", ("studies",)))
_NODE = re.compile(r'^\s*(\d+)\[label = "([^"]+)", color = "([^"]+)"')
_EDGE = re.compile(r"^\s*(\d+) -> (\d+)")


def parse_rulegraph(dot: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Snakemake's --rulegraph DOT text -> ({rule: colour}, {(upstream rule, downstream rule)})."""
    names, colours, edges = {}, {}, set()
    for line in dot.splitlines():
        if node := _NODE.match(line):
            names[node[1]] = node[2]
            colours[node[2]] = node[3]
        elif edge := _EDGE.match(line):
            edges.add((edge[1], edge[2]))
    return colours, {(names[a], names[b]) for a, b in edges}


def union_dot(graphs) -> str:
    """One DOT graph of the union of several rule graphs, nodes and edges in sorted order (reproducible:
    Snakemake lists edges in set order, which changes from run to run)."""
    colours, edges = {}, set()
    for dot in graphs:
        c, e = parse_rulegraph(dot)
        colours.update({k: v for k, v in c.items() if k not in colours})
        edges |= e
    index = {name: i for i, name in enumerate(sorted(colours))}
    lines = ["digraph snakemake_dag {", "    graph[bgcolor=white, margin=0];",
             "    node[shape=box, style=rounded, fontname=sans, fontsize=10, penwidth=2];",
             "    edge[penwidth=2, color=grey];"]
    lines += [f'    {i}[label = "{name}", color = "{colours[name]}", style="rounded"];' for name, i in index.items()]
    lines += [f"    {index[a]} -> {index[b]}" for a, b in sorted(edges)]
    return "\n".join(lines + ["}"]) + "\n"


def rulegraph(configfile: str, targets) -> str:
    """Snakemake's rule graph of ``targets`` under ``configfile`` (every rule they can reach: --forceall)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", *targets, "--rulegraph", "dot", "--forceall",
                          "--nolock", "--configfile", configfile], cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"snakemake --rulegraph failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return run.stdout[run.stdout.index("digraph"):]


def write(dot_path, png_path, runs=RUNS) -> None:
    dot = union_dot(rulegraph(configfile, targets) for configfile, targets in runs)
    write_text_atomic(dot_path, dot)
    with atomic_path(png_path, suffix=".png") as tmp:
        subprocess.run(["dot", "-Tpng", "-Gdpi=80", "-o", str(tmp)], input=dot, text=True, check=True)
    print(f"wrote {dot_path} and {png_path} ({dot.count('label =')} rules)")


if "snakemake" in globals():
    with redirect_to_log(snakemake):  # noqa: F821
        write(snakemake.output.dot, snakemake.output.png)  # noqa: F821
elif __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dot")
    parser.add_argument("png")
    args = parser.parse_args()
    write(args.dot, args.png)
