"""Static compressed radix tree (character level) for prefix routing.

Keys are arbitrary strings; each key maps to one value.  The only query is
``deepest(path)``: the node of the longest key that is a prefix of ``path``.
Every node carrying a value is linked (``up``) to the nearest ancestor that also
carries a value, so callers walk all matching prefixes, deepest first, without
allocating:

    node = tree.deepest(path)
    while node is not None:
        ... node.value ...
        node = node.up

Equivalent to lua-resty-radixtree's ``radix_tree_search`` + ``radix_tree_up``
(rax iterator walking back over the keys that prefix the path).  The router does
not call ``deepest``: ``router._Table.match`` walks the nodes inline (``children``
keyed by the first character of each child's label, ``llen`` its cached length),
starting from a :meth:`RadixTree.segment_index` entry, so a request costs no call.

A frozen tree can be changed in place with :meth:`RadixTree.set` and
:meth:`RadixTree.discard`, which keep the ``up`` links exact and the tree
compressed (no valueless leaves, no valueless single-child inner nodes), so a
route change costs a walk down one key instead of a rebuild.  A jump table made
by :meth:`RadixTree.segment_index` is brought up to date by
:meth:`RadixTree.refresh_segments`.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["RadixNode", "RadixTree"]

V = TypeVar("V")


class RadixNode(Generic[V]):
    __slots__ = ("label", "llen", "children", "value", "up")

    def __init__(self, label: str, value: V | None = None) -> None:
        self.label = label
        self.llen = len(label)  # refreshed by RadixTree.freeze()
        # first char of child label -> child; None for leaves (saves memory)
        self.children: dict[str, RadixNode[V]] | None = None
        self.value = value
        self.up: RadixNode[V] | None = None

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"RadixNode({self.label!r}, value={self.value!r})"


class RadixTree(Generic[V]):
    """Build with :meth:`from_dict` (bulk) or :meth:`set` calls; change a built tree with
    :meth:`set` / :meth:`discard` (both keep the ``up`` links exact)."""

    __slots__ = ("root", "_size")

    def __init__(self, items: Iterable[tuple[str, V]] | None = None) -> None:
        self.root: RadixNode[V] = RadixNode("")
        self._size = 0
        if items is not None:
            for k, v in items:
                self.set(k, v)

    def __len__(self) -> int:
        return self._size

    @classmethod
    def from_dict(cls, items: dict[str, V]) -> RadixTree[V]:
        """Bulk build (sorted keys + stack, linear in total key length); frozen."""
        tree: RadixTree[V] = cls()
        root = tree.root
        nodes: list[RadixNode[V]] = [root]
        depths: list[int] = [0]
        prev = ""
        first = True
        for key in sorted(items):
            value = items[key]
            if value is None:
                raise ValueError("RadixTree values must not be None")
            if first:
                lcp = 0
                first = False
            else:
                lim = min(len(prev), len(key))
                lcp = 0
                while lcp < lim and prev[lcp] == key[lcp]:
                    lcp += 1
            popped: RadixNode[V] | None = None
            while depths[-1] > lcp:
                popped = nodes.pop()
                depths.pop()
            parent = nodes[-1]
            pdepth = depths[-1]
            if pdepth < lcp:
                # split popped's edge (popped is parent's child on prev's path)
                assert popped is not None
                cut = lcp - pdepth
                mid: RadixNode[V] = RadixNode(popped.label[:cut])
                popped.label = popped.label[cut:]
                mid.children = {popped.label[0]: popped}
                parent.children[mid.label[0]] = mid  # type: ignore[index]
                nodes.append(mid)
                depths.append(lcp)
                parent = mid
                pdepth = lcp
            if pdepth == len(key):
                parent.value = value
            else:
                leaf: RadixNode[V] = RadixNode(key[pdepth:], value)
                if parent.children is None:
                    parent.children = {}
                parent.children[key[pdepth]] = leaf
                nodes.append(leaf)
                depths.append(len(key))
            prev = key
        tree._size = len(items)
        tree.freeze()
        return tree

    def freeze(self) -> None:
        """Compute the ``up`` links and label lengths of a tree built without them."""
        stack: list[tuple[RadixNode[V], RadixNode[V] | None]] = [(self.root, None)]
        while stack:
            node, nearest = stack.pop()
            node.llen = len(node.label)
            node.up = nearest if node.value is not None else None
            if node.value is not None:
                nearest = node
            if node.children:
                for child in node.children.values():
                    stack.append((child, nearest))

    def set(self, key: str, value: V) -> bool:
        """Insert or replace ``key`` keeping the ``up`` links of a frozen tree exact.

        Returns True when ``key`` is new (the tree shape changed), False when only
        its value was replaced.  A node that gains a value becomes the nearest
        valued ancestor of the valued nodes just below it, so those are re-pointed.
        """
        if value is None:
            raise ValueError("RadixTree values must not be None")
        node = self.root
        above: RadixNode[V] | None = None  # nearest valued node strictly above ``node``
        pos = 0
        n = len(key)
        while pos < n:
            nearest = node if node.value is not None else above
            children = node.children
            if children is None:
                children = node.children = {}
            c = key[pos]
            child = children.get(c)
            if child is None:
                leaf: RadixNode[V] = RadixNode(key[pos:], value)
                leaf.up = nearest
                children[c] = leaf
                self._size += 1
                return True
            label = child.label
            if key.startswith(label, pos):
                above = nearest
                node = child
                pos += len(label)
                continue
            m = 1
            lim = min(len(label), n - pos)
            while m < lim and label[m] == key[pos + m]:
                m += 1
            # split the edge: node -> mid(label[:m]) -> child(label[m:]); child keeps its
            # identity, so up links and jump-table entries pointing at it stay valid
            mid: RadixNode[V] = RadixNode(label[:m])
            child.label = label[m:]
            child.llen = len(child.label)
            mid.children = {child.label[0]: child}
            children[c] = mid
            above = nearest
            node = mid
            pos += m
        if node.value is not None:
            node.value = value
            return False
        node.value = value
        node.up = above
        self._size += 1
        _repoint_below(node, node)
        return True

    def discard(self, key: str) -> bool:
        """Remove ``key`` if present (True if it was), keeping ``up`` links exact.

        The valued nodes that pointed ``up`` to the removed one point to its own
        ``up`` instead; valueless leaves are pruned and a valueless node left with
        one child is merged into it (the child keeps its identity).
        """
        node = self.root
        parents: list[RadixNode[V]] = []
        pos = 0
        n = len(key)
        while pos < n:
            children = node.children
            child = children.get(key[pos]) if children is not None else None
            if child is None or not key.startswith(child.label, pos):
                return False
            parents.append(node)
            node = child
            pos += len(child.label)
        if node.value is None:
            return False
        node.value = None
        self._size -= 1
        _repoint_below(node, node.up)
        node.up = None
        while parents and node.value is None:
            parent = parents.pop()
            children = node.children
            if not children:  # valueless leaf: unlink, then look at the parent
                del parent.children[node.label[0]]  # type: ignore[union-attr]
                if not parent.children:
                    parent.children = None
                node = parent
                continue
            if len(children) == 1:  # valueless pass-through node: fold into its child
                (only,) = children.values()
                only.label = node.label + only.label
                only.llen = len(only.label)
                parent.children[node.label[0]] = only  # type: ignore[index]
            break
        return True

    def deepest(self, path: str) -> RadixNode[V] | None:
        """Node of the longest key that is a prefix of ``path`` (or None).  (The router's
        ``_Table.match`` has its own inline walk with the jump table: no call per request.)"""
        found = self._valued_prefix_nodes(path)
        return found[-1] if found else None


    def segment_index(
        self,
    ) -> dict[str, tuple[RadixNode[V], RadixNode[V] | None, str, RadixNode[V] | None]]:
        """Jump table over the first path segment, to skip the top of deep trees.

        Maps every ``"/seg/"`` that starts some key to the walk state after
        consuming it: ``(node, pending, rest, best)`` -- the walk continues at
        ``node``; if ``pending`` is set the consumed text ended inside the edge to
        ``pending`` and the path must continue with ``rest`` to enter it; ``best``
        is the deepest valued node seen so far.  Lookups whose first segment is
        missing fall back to the normal walk, so results are unchanged.
        """
        index: dict[str, tuple[RadixNode[V], RadixNode[V] | None, str, RadixNode[V] | None]] = {}
        root = self.root
        root_best = root if root.value is not None else None
        # (parent, node, key up to and including node's label, best above node)
        stack: list[tuple[RadixNode[V], RadixNode[V], str, RadixNode[V] | None]] = [
            (root, child, child.label, root_best) for child in (root.children or {}).values()
        ]
        while stack:
            parent, node, key, best = stack.pop()
            start = len(key) - len(node.label)
            j = key.find("/", max(start, 1))
            if j != -1:
                seg = key[: j + 1]
                if j + 1 == len(key):  # segment ends exactly at this node
                    index[seg] = (node, None, "", node if node.value is not None else best)
                else:  # segment ends inside the edge parent -> node
                    index[seg] = (parent, node, key[j + 1 :], best)
                continue
            nbest = node if node.value is not None else best
            if node.children:
                for child in node.children.values():
                    stack.append((node, child, key + child.label, nbest))
        return index

    def segment_entry(
        self, seg: str
    ) -> tuple[RadixNode[V], RadixNode[V] | None, str, RadixNode[V] | None] | None:
        """The :meth:`segment_index` entry for ``seg`` (None when no key starts with it)."""
        node = self.root
        best = node if node.value is not None else None
        pos = 0
        n = len(seg)
        while pos < n:
            children = node.children
            child = children.get(seg[pos]) if children is not None else None
            if child is None:
                return None
            label = child.label
            end = pos + len(label)
            if end > n:  # the segment ends inside the edge node -> child
                if not label.startswith(seg[pos:]):
                    return None
                return (node, child, label[n - pos :], best)
            if not seg.startswith(label, pos):
                return None
            node = child
            pos = end
            if node.value is not None:
                best = node
        return (node, None, "", best)

    def refresh_segments(
        self,
        index: dict[str, tuple[RadixNode[V], RadixNode[V] | None, str, RadixNode[V] | None]],
        keys: Iterable[str],
    ) -> None:
        """Update a :meth:`segment_index` result after :meth:`set` added / :meth:`discard`
        removed ``keys`` (value-only replacements need nothing: entries hold nodes).

        Two kinds of entry can go wrong.  The entry of a key's own first segment
        (``key[:key.find('/', 1) + 1]``): nodes at or below the segment end may
        have been split, merged or pruned, so it is recomputed with one walk from
        the root.  And a "short" key (no ``/`` after its first character) is a
        prefix of every segment starting with it, whose ``best`` may change: see
        :meth:`_refresh_best`.  Any other entry stays correct although its
        ``node`` may have been split off or merged away: with ``pending`` set the
        matcher only uses ``pending``, ``rest`` and ``best``, which such changes
        leave intact (split and merged children keep their identity and only gain
        or lose label text above the segment end); without ``pending``, ``node``
        sits at the segment end, where only keys of that segment change anything.
        """
        segs: set[str] = set()
        short: set[str] = set()
        for key in keys:
            j = key.find("/", 1)
            if j == -1:
                short.add(key)
            else:
                segs.add(key[: j + 1])
        entry = self.segment_entry
        for seg in segs:
            e = entry(seg)
            if e is None:
                index.pop(seg, None)
            else:
                index[seg] = e
        if short:
            self._refresh_best(index, short, segs)

    def _refresh_best(
        self,
        index: dict[str, tuple[RadixNode[V], RadixNode[V] | None, str, RadixNode[V] | None]],
        short: builtins.set[str],    # builtins: RadixTree.set shadows the name here
        done: builtins.set[str],
    ) -> None:
        """Fix ``best`` of the entries below changed short keys (``done`` are already fresh).

        Adding or removing ``/`` touches the entry of every segment, so this must
        not walk per entry.  For a segment S, let K be the longest changed short
        key prefixing it and W the deepest valued node on the path to K
        (inclusive).  Nothing changed between K and the end of S (a change there
        would be S's own segment), so the old ``best`` is still right when it lies
        below K and holds a value; when it is None, lost its value or lies on the
        path to K, the new one is W.
        """
        shorts = sorted(short, key=len, reverse=True)  # the first prefix found is the longest
        starts = tuple(shorts)
        ends: dict[str, tuple[RadixNode[V] | None, set[RadixNode[V]]]] = {}
        for key in shorts:
            valued = self._valued_prefix_nodes(key)
            ends[key] = (valued[-1] if valued else None, set(valued))
        for seg in [s for s in index if s.startswith(starts)]:
            if seg in done:
                continue
            for key in shorts:
                if seg.startswith(key):
                    break
            deepest, on_path = ends[key]
            e = index[seg]
            best = e[3]
            if best is not deepest and (best is None or best.value is None or best in on_path):
                index[seg] = (e[0], e[1], e[2], deepest)

    def _valued_prefix_nodes(self, key: str) -> list[RadixNode[V]]:
        """The valued nodes whose keys are prefixes of ``key`` (itself included, when a key),
        root first."""
        node = self.root
        found = [node] if node.value is not None else []
        pos = 0
        n = len(key)
        while pos < n:
            children = node.children
            child = children.get(key[pos]) if children is not None else None
            if child is None or not key.startswith(child.label, pos):
                break
            node = child
            pos += len(child.label)
            if node.value is not None:
                found.append(node)
        return found

    def prefixes(self, path: str) -> Iterator[tuple[str, V]]:
        """All (key, value) whose key prefixes ``path``, deepest first (debug/test helper)."""
        found: list[tuple[str, V]] = []
        node = self.root
        if node.value is not None:
            found.append(("", node.value))
        pos = 0
        while pos < len(path) and node.children:
            child = node.children.get(path[pos])
            if child is None or not path.startswith(child.label, pos):
                break
            pos += len(child.label)
            node = child
            if node.value is not None:
                found.append((path[:pos], node.value))
        return reversed(found)

    def items(self) -> Iterator[tuple[str, V]]:
        stack: list[tuple[RadixNode[V], str]] = [(self.root, "")]
        while stack:
            node, prefix = stack.pop()
            key = prefix + node.label
            if node.value is not None:
                yield key, node.value
            if node.children:
                for child in node.children.values():
                    stack.append((child, key))


def _repoint_below(node: RadixNode[V], target: RadixNode[V] | None) -> None:
    """Point ``up`` of the valued nodes nearest below ``node`` (those whose nearest valued
    ancestor is ``node``'s position) at ``target``; deeper ones keep theirs."""
    stack = list(node.children.values()) if node.children else []
    while stack:
        child = stack.pop()
        if child.value is not None:
            child.up = target
        elif child.children:
            stack.extend(child.children.values())

