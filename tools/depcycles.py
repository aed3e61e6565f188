#!/usr/bin/env python3
"""depcycles.py — finds dependency cycles between the object files of a
static library (or any objects): A depends on B when A uses a symbol that
B defines (nm). Prints each cycle (a strongly connected component of more
than one file) and exits 1 if there is one.

    python3 tools/depcycles.py build/libsockit-services.a
"""
import subprocess
import sys


def symbols(paths):
    """{object: (defined, undefined)} from `nm` on objects or archives."""
    out = subprocess.run(["nm", "-A"] + paths, capture_output=True, text=True,
                         check=True).stdout
    objs = {}
    for line in out.splitlines():
        # "lib.a:member.o:VALUE KIND NAME" or "obj.o:VALUE KIND NAME"
        head, _, rest = line.rpartition(".o:")
        obj = head.rsplit(":", 1)[-1].rsplit("/", 1)[-1] + ".o"
        parts = rest.split()
        if len(parts) < 2:
            continue
        kind, name = parts[-2], parts[-1]
        d, u = objs.setdefault(obj, (set(), set()))
        if kind == "U":
            u.add(name)
        elif kind in "TDBRC":
            d.add(name)
    return objs


def sccs(graph):
    """Tarjan's strongly connected components, iteratively bounded by the
    graph's size (a few dozen files)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    objs = symbols(sys.argv[1:])
    owner = {}
    for obj, (d, _) in objs.items():
        for name in d:
            owner[name] = obj
    graph = {obj: set() for obj in objs}
    refs = 0
    for obj, (_, u) in objs.items():
        for name in u:
            dep = owner.get(name)
            if dep is not None and dep != obj:
                graph[obj].add(dep)
                refs += 1
    cycles = [c for c in sccs(graph) if len(c) > 1]
    edges = sum(len(v) for v in graph.values())
    print("%d files, %d cross-file symbol references, %d file dependencies, %d cycles"
          % (len(objs), refs, edges, len(cycles)))
    for c in cycles:
        print("cycle: " + " ".join(c))
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())
